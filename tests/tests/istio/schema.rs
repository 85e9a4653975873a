//! A structural-schema validator for the OpenAPI v3 subset Kubernetes CRDs use: `type`,
//! `properties` (unknown fields rejected unless `additionalProperties` or
//! `x-kubernetes-preserve-unknown-fields` allow them), `required`, `enum`, `items`,
//! `additionalProperties`, `oneOf`/`anyOf`/`allOf`/`not`, `nullable`,
//! `x-kubernetes-int-or-string`, bounds and lengths, `format: int32`. `pattern` is checked for
//! the one pattern the generated fields meet (WasmPlugin's sha256) and reported as unchecked
//! for any other; the CEL rules (`x-kubernetes-validations`) are not evaluated.

use serde_json::Value;

const SHA256_PATTERN: &str = "(^$|^[a-f0-9]{64}$)";

pub fn validate(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    if value.is_null() && schema["nullable"] == true {
        return;
    }
    if schema["x-kubernetes-int-or-string"] == true {
        if !(value.is_i64() || value.is_u64() || value.is_string()) {
            errors.push(format!("{path}: an integer or a string, not {value}"));
        }
        return;
    }
    if let Some(kind) = schema["type"].as_str() {
        let ok = match kind {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            _ => false,
        };
        if !ok {
            errors.push(format!("{path}: expected {kind}, found {value}"));
            return;
        }
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            errors.push(format!("{path}: {value} is not one of {allowed:?}"));
        }
    }
    if schema["format"] == "int32" && value.as_i64().and_then(|n| i32::try_from(n).ok()).is_none() {
        errors.push(format!("{path}: {value} is not an int32"));
    }
    if let (Some(min), Some(n)) = (schema["minimum"].as_f64(), value.as_f64()) {
        if n < min {
            errors.push(format!("{path}: {n} is below {min}"));
        }
    }
    if let (Some(max), Some(n)) = (schema["maximum"].as_f64(), value.as_f64()) {
        if n > max {
            errors.push(format!("{path}: {n} is above {max}"));
        }
    }
    if let Some(s) = value.as_str() {
        let len = s.chars().count() as u64;
        if schema["minLength"].as_u64().is_some_and(|m| len < m) {
            errors.push(format!("{path}: shorter than {}", schema["minLength"]));
        }
        if schema["maxLength"].as_u64().is_some_and(|m| len > m) {
            errors.push(format!("{path}: longer than {}", schema["maxLength"]));
        }
        if let Some(pattern) = schema["pattern"].as_str() {
            let ok = match pattern {
                SHA256_PATTERN => {
                    s.is_empty()
                        || (s.len() == 64
                            && s.bytes()
                                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
                }
                _ => {
                    errors.push(format!("{path}: pattern {pattern} is not checked here"));
                    true
                }
            };
            if !ok {
                errors.push(format!("{path}: {s:?} does not match {pattern}"));
            }
        }
    }
    if let Some(items) = value.as_array() {
        let len = items.len() as u64;
        if schema["minItems"].as_u64().is_some_and(|m| len < m) {
            errors.push(format!("{path}: fewer than {} items", schema["minItems"]));
        }
        if schema["maxItems"].as_u64().is_some_and(|m| len > m) {
            errors.push(format!("{path}: more than {} items", schema["maxItems"]));
        }
        if schema.get("items").is_some() {
            for (i, item) in items.iter().enumerate() {
                validate(&schema["items"], item, &format!("{path}[{i}]"), errors);
            }
        }
    }
    if let Some(object) = value.as_object() {
        if let Some(required) = schema["required"].as_array() {
            for key in required.iter().filter_map(Value::as_str) {
                if !object.contains_key(key) {
                    errors.push(format!("{path}: required field {key} is missing"));
                }
            }
        }
        if schema["maxProperties"]
            .as_u64()
            .is_some_and(|m| object.len() as u64 > m)
        {
            errors.push(format!("{path}: too many properties"));
        }
        let typed = schema.get("type").is_some();
        let preserve = schema["x-kubernetes-preserve-unknown-fields"] == true;
        for (key, child) in object {
            let at = format!("{path}.{key}");
            if let Some(property) = schema["properties"].get(key) {
                validate(property, child, &at, errors);
            } else if schema["additionalProperties"].is_object() {
                validate(&schema["additionalProperties"], child, &at, errors);
            } else if typed && !preserve && schema["additionalProperties"] != true {
                errors.push(format!("{at}: unknown field"));
            }
        }
    }
    let passes = |sub: &Value| {
        let mut e = Vec::new();
        validate(sub, value, path, &mut e);
        e.is_empty()
    };
    if let Some(subs) = schema["oneOf"].as_array() {
        let n = subs.iter().filter(|s| passes(s)).count();
        if n != 1 {
            errors.push(format!("{path}: matches {n} of oneOf, not exactly one"));
        }
    }
    if let Some(subs) = schema["anyOf"].as_array() {
        if !subs.iter().any(passes) {
            errors.push(format!("{path}: matches none of anyOf"));
        }
    }
    if let Some(subs) = schema["allOf"].as_array() {
        for sub in subs {
            validate(sub, value, path, errors);
        }
    }
    if let Some(sub) = schema.get("not") {
        if passes(sub) {
            errors.push(format!("{path}: matches a schema under not"));
        }
    }
}

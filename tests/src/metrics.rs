//! Reading Prometheus text (the native host's `/metrics`, Envoy's `/stats/prometheus`) by the
//! exact line a metric is printed as: both hosts must print the same name and labels.

/// The series `name{label="value",…}` as both hosts print it (labels in the given order).
pub fn prometheus_series(name: &str, labels: &[(&str, &str)]) -> String {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", labels.join(","))
}

/// The value of `series` (from [`prometheus_series`]) in `text`; `None` when it is absent.
pub fn prometheus_value(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

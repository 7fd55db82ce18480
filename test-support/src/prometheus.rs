//! Reading Prometheus text format in tests.

/// The value of the first series named `name` whose labels include every `labels` pair, if
/// `text` (Prometheus text format) has one. Comment lines are skipped.
///
/// ```
/// let text = "# TYPE jobs counter\njobs{queue=\"q\",type=\"t\"} 3\njobs{queue=\"p\",type=\"t\"} 1\n";
/// assert_eq!(dual_mode_test_support::prometheus_value(text, "jobs", &[("queue", "q")]), Some(3.0));
/// assert_eq!(dual_mode_test_support::prometheus_value(text, "jobs", &[("queue", "x")]), None);
/// ```
#[must_use]
pub fn prometheus_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|line| !line.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (series_name, series_labels) = series.split_once('{').unwrap_or((series, ""));
        let matches =
            series_name == name && labels.iter().all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\"")));
        if matches { value.parse().ok() } else { None }
    })
}

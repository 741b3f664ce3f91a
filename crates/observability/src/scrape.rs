//! Reading a sample back out of the text format, for tests that scrape `/metrics`.

/// The value of the sample `name` whose labels include every pair of `labels` (other labels
/// may be present), or `None` when there is no such sample. Several matches are summed, so a
/// subset of labels reads a total.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut total = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = match line.rsplit_once(' ') {
            Some(parts) => parts,
            None => continue,
        };
        let (metric, label_text) = match series.split_once('{') {
            Some((metric, rest)) => (metric, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name {
            continue;
        }
        let present: Vec<(&str, &str)> = label_text
            .split("\",")
            .filter(|pair| !pair.is_empty())
            .filter_map(|pair| pair.split_once("=\""))
            .map(|(k, v)| (k, v.trim_end_matches('"')))
            .collect();
        if labels.iter().all(|wanted| present.contains(wanted))
            && let Ok(value) = value.parse::<f64>()
        {
            *total.get_or_insert(0.0) += value;
        }
    }
    total
}

/// Checks what Prometheus's text parser insists on: each family's `# TYPE` appears once, and
/// every sample follows its own family's `# TYPE` line (a family is not split). Returns the
/// first problem found.
///
/// # Errors
/// A description of the first violation.
pub fn check_format(text: &str) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    let mut current: Option<&str> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap_or_default();
            if !seen.insert(name) {
                return Err(format!("family {name} is declared twice"));
            }
            current = Some(name);
        } else if !line.starts_with('#') && !line.is_empty() {
            let metric = line.split(['{', ' ']).next().unwrap_or_default();
            let family = current.ok_or_else(|| format!("{metric} has no # TYPE"))?;
            if !metric.starts_with(family) {
                return Err(format!("{metric} appears outside its family (in {family})"));
            }
        }
    }
    Ok(())
}

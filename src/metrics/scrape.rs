//! Reading Prometheus text exposition back: for `corelane stat`, which
//! watches a running server through its metrics endpoint, and for tests.
//!
//! Only what [`to_prometheus`](super::export::to_prometheus) writes needs
//! to be understood (samples with labels, comments), but anything else is
//! refused with an error naming the line rather than misread.

use std::fmt;

/// One sample: a metric name, its labels in order, and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Metric name, e.g. `corelane_messages_sent_total`.
    pub name: String,
    /// Label names and (unescaped) values.
    pub labels: Labels,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// A line that is not a sample or a comment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for ParseError {}

/// Parses every sample of `text`; comments and blank lines are skipped.
///
/// # Errors
///
/// The first malformed line.
pub fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut samples = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let error = |reason| ParseError {
            line: number + 1,
            reason,
        };
        samples.push(sample(line).map_err(error)?);
    }
    Ok(samples)
}

fn sample(line: &str) -> Result<Sample, &'static str> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("no metric name");
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = label_set(inner)?;
        labels = parsed;
        rest = after;
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("no value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse::<f64>().map_err(|_| "value is not a number")?,
    };
    // An optional timestamp may follow; nothing after it.
    if let Some(timestamp) = fields.next() {
        timestamp.parse::<i64>().map_err(|_| "bad timestamp")?;
    }
    if fields.next().is_some() {
        return Err("trailing text after the sample");
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Label names and values, in order.
type Labels = Vec<(String, String)>;

/// Parses `name="value",...}`; returns the labels and what follows `}`.
fn label_set(mut text: &str) -> Result<(Labels, &str), &'static str> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start();
        if let Some(after) = text.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = text.find('=').ok_or("label without '='")?;
        let key = text[..eq].trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err("bad label name");
        }
        let quoted = text[eq + 1..]
            .trim_start()
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value"),
                Some((at, '"')) => break at,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    _ => return Err("bad escape in label value"),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((key.to_string(), value));
        text = quoted[end + 1..].trim_start();
        text = text.strip_prefix(',').unwrap_or(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_samples_with_and_without_labels() {
        let text = "# HELP x y\n# TYPE x counter\nx 3\n\
                    lat{core=\"1\",kind=\"a \\\"b\\\"\\\\\",quantile=\"0.99\"} 1.5e-6\n\
                    up{} +Inf 1700000000\n";
        let samples = parse(text).unwrap();
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[0].name, "x");
        assert_eq!(samples[0].value, 3.0);
        assert_eq!(samples[1].label("core"), Some("1"));
        assert_eq!(samples[1].label("kind"), Some("a \"b\"\\"));
        assert_eq!(samples[1].value, 1.5e-6);
        assert_eq!(samples[2].value, f64::INFINITY);
    }

    #[test]
    fn refuses_malformed_lines_by_number() {
        for (text, line) in [
            ("ok 1\n{core=\"1\"} 2", 2),
            ("x{core=1} 2", 1),
            ("x{core=\"1\" 2", 1),
            ("x", 1),
            ("x one", 1),
            ("x 1 2 3", 1),
        ] {
            assert_eq!(parse(text).unwrap_err().line, line, "{text}");
        }
    }
}

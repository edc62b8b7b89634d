//! PromQL helpers shared by the rule and dashboard tests.

use std::collections::BTreeSet;

/// Metric names in a PromQL expression: identifiers outside strings and label matchers
/// that name this exporter's metrics, plus `up`.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut chars = expr.char_indices().peekable();
    let mut depth_braces = 0;
    while let Some((i, c)) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                let mut escaped = false;
                for (_, d) in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if d == '\\' && c != '`' {
                        escaped = true;
                    } else if d == c {
                        break;
                    }
                }
            }
            '{' => depth_braces += 1,
            '}' => depth_braces -= 1,
            c if depth_braces == 0 && (c.is_ascii_alphabetic() || c == '_' || c == ':') => {
                let mut end = i + c.len_utf8();
                while let Some(&(j, d)) = chars.peek() {
                    if d.is_ascii_alphanumeric() || d == '_' || d == ':' {
                        end = j + d.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                let word = &expr[i..end];
                if word.starts_with("oci_registry_") || word == "up" {
                    names.insert(word.to_string());
                }
            }
            _ => {}
        }
    }
    names
}

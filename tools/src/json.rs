//! Just enough JSON writing for the CLI's `--json` outputs.

/// A JSON string literal.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON number (non-finite values become `null`).
pub fn number(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else {
        "null".into()
    }
}

/// A JSON array of numbers (non-finite values become `null`).
pub fn numbers(xs: &[f64]) -> String {
    let body: Vec<String> = xs.iter().map(|&x| number(x)).collect();
    format!("[{}]", body.join(", "))
}

/// A JSON object from already-encoded values.
pub fn object(fields: &[(&str, String)]) -> String {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}: {v}", string(k)))
        .collect();
    format!("{{{}}}", body.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(string("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        assert_eq!(
            object(&[("x", number(1.5)), ("y", string("z"))]),
            "{\"x\": 1.5, \"y\": \"z\"}"
        );
        assert_eq!(number(f64::NAN), "null");
        assert_eq!(numbers(&[0.5, f64::INFINITY]), "[0.5, null]");
        assert_eq!(numbers(&[]), "[]");
    }
}

//! One flat JSON object per run: every benchmark's last line of output, and what
//! `benchmark_table_vs_sqlite --report` reads back. Numbers, strings without escapes,
//! booleans and null; no nesting. Fields print in the order they were first set.

/// A value of a [`JsonLine`] field.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonValue {
    /// A number; integral values print without a fraction, others with three decimals, and
    /// NaN or infinities as `null`.
    Number(f64),
    /// A string; a `"` in it prints as `'`.
    Text(String),
    /// `true` or `false`.
    Bool(bool),
}

/// A flat JSON object under construction or read back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JsonLine {
    fields: Vec<(String, JsonValue)>,
}

impl JsonLine {
    /// An object with no fields.
    pub fn new() -> JsonLine {
        JsonLine::default()
    }

    fn put(&mut self, name: &str, value: JsonValue) -> &mut JsonLine {
        match self.fields.iter_mut().find(|(n, _)| n == name) {
            Some((_, old)) => *old = value,
            None => self.fields.push((name.to_string(), value)),
        }
        self
    }

    /// Sets field `name` to the number `value`.
    pub fn set(&mut self, name: &str, value: f64) -> &mut JsonLine {
        self.put(name, JsonValue::Number(value))
    }

    /// Sets field `name` to the string `value`.
    pub fn set_text(&mut self, name: &str, value: &str) -> &mut JsonLine {
        self.put(name, JsonValue::Text(value.to_string()))
    }

    /// Sets field `name` to the boolean `value`.
    pub fn set_bool(&mut self, name: &str, value: bool) -> &mut JsonLine {
        self.put(name, JsonValue::Bool(value))
    }

    /// The value of field `name`.
    pub fn get(&self, name: &str) -> Option<&JsonValue> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Field `name` as a number; NaN if it is absent or not a number.
    pub fn number(&self, name: &str) -> f64 {
        match self.get(name) {
            Some(JsonValue::Number(n)) => *n,
            _ => f64::NAN,
        }
    }

    /// Field `name` as text (a number or boolean printed); empty if absent.
    pub fn text(&self, name: &str) -> String {
        match self.get(name) {
            Some(JsonValue::Text(t)) => t.clone(),
            Some(JsonValue::Number(n)) => format!("{n}"),
            Some(JsonValue::Bool(b)) => format!("{b}"),
            None => String::new(),
        }
    }

    /// The field names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|(n, _)| n.as_str())
    }

    /// The object on one line.
    pub fn to_json(&self) -> String {
        let body: Vec<String> = self
            .fields
            .iter()
            .map(|(name, value)| {
                let value = match value {
                    JsonValue::Number(n) if n.is_finite() && n.fract() == 0.0 => {
                        format!("{}", *n as i64)
                    }
                    JsonValue::Number(n) if n.is_finite() => format!("{n:.3}"),
                    JsonValue::Number(_) => "null".to_string(),
                    JsonValue::Text(t) => format!("\"{}\"", t.replace('"', "'")),
                    JsonValue::Bool(b) => format!("{b}"),
                };
                format!("\"{name}\":{value}")
            })
            .collect();
        format!("{{{}}}", body.join(","))
    }

    /// Parses the objects [`JsonLine::to_json`] writes. A `null` field reads back as NaN.
    pub fn from_json(line: &str) -> Result<JsonLine, String> {
        let body = line
            .trim()
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .ok_or_else(|| format!("not a JSON object: {line:?}"))?;
        let mut out = JsonLine::new();
        let mut rest = body;
        while !rest.is_empty() {
            let (name, after) = rest
                .strip_prefix('"')
                .and_then(|s| s.split_once("\":"))
                .ok_or_else(|| format!("bad JSON near {rest:?}"))?;
            let next = if let Some(text) = after.strip_prefix('"') {
                let (text, next) = text
                    .split_once('"')
                    .ok_or_else(|| format!("unterminated string near {after:?}"))?;
                out.set_text(name, text);
                next
            } else {
                let (value, next) = after.split_once(',').unwrap_or((after, ""));
                match value.trim() {
                    "true" => out.set_bool(name, true),
                    "false" => out.set_bool(name, false),
                    "null" => out.set(name, f64::NAN),
                    number => out.set(
                        name,
                        number
                            .parse::<f64>()
                            .map_err(|_| format!("field {name:?}: bad value {number:?}"))?,
                    ),
                };
                next
            };
            rest = next.strip_prefix(',').unwrap_or(next);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_reads_back_as_written() {
        let mut line = JsonLine::new();
        line.set("rows", 1_000_000.0)
            .set("p50_ns", 123.4567)
            .set("ratio", f64::NAN)
            .set_text("dist", "uniform")
            .set_bool("soak", false)
            .set("rows", 2.0);
        let text = line.to_json();
        assert_eq!(
            text,
            "{\"rows\":2,\"p50_ns\":123.457,\"ratio\":null,\"dist\":\"uniform\",\"soak\":false}"
        );
        let back = JsonLine::from_json(&text).expect("parses");
        assert_eq!(back.number("rows"), 2.0);
        assert_eq!(back.number("p50_ns"), 123.457);
        assert!(back.number("ratio").is_nan());
        assert_eq!(back.text("dist"), "uniform");
        assert_eq!(back.get("soak"), Some(&JsonValue::Bool(false)));
        assert_eq!(
            back.names().collect::<Vec<_>>(),
            ["rows", "p50_ns", "ratio", "dist", "soak"]
        );
        assert!(JsonLine::from_json("{\"a\":x}").is_err());
        assert!(JsonLine::from_json("[1]").is_err());
    }
}

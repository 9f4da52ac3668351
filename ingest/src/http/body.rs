//! A request body's items: one JSON object, a JSON array of objects, or NDJSON (one object a
//! line), by content type.

use serde_json::value::RawValue;

/// Where an item was in the body, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// Index in a JSON array (or 0 for a lone object).
    Index(usize),
    /// Line of an NDJSON body, from 1.
    Line(usize),
}

/// The body's items as unparsed text, or why the body as a whole cannot be read.
pub fn items(body: &str, ndjson: bool) -> Result<Vec<(Position, &str)>, String> {
    if ndjson {
        return Ok(body
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(i, line)| (Position::Line(i + 1), line))
            .collect());
    }
    let trimmed = body.trim_start();
    if trimmed.starts_with('[') {
        let array: Vec<&RawValue> = serde_json::from_str(trimmed)
            .map_err(|e| format!("the body is not a JSON array of objects: {e}"))?;
        return Ok(array
            .into_iter()
            .enumerate()
            .map(|(i, raw)| (Position::Index(i), raw.get()))
            .collect());
    }
    if trimmed.is_empty() {
        return Err("the body is empty".into());
    }
    Ok(vec![(Position::Index(0), body)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_arrays_and_lines() {
        assert_eq!(items(" {\"a\":1} ", false).unwrap().len(), 1);
        let array = items("[{\"a\":1}, {\"b\":2}]", false).unwrap();
        assert_eq!(array[1], (Position::Index(1), "{\"b\":2}"));
        let lines = items("{\"a\":1}\n\n{\"b\":2}\n", true).unwrap();
        assert_eq!(lines[1], (Position::Line(3), "{\"b\":2}"));
        assert!(
            items("[{\"a\":1},", false)
                .unwrap_err()
                .contains("JSON array")
        );
        assert!(items("  ", false).is_err());
    }
}

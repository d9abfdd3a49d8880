//! Input echoed in messages: a value from a raw file, a manifest or a
//! request is shown as a short, printable excerpt, never whole. A message
//! built from input can therefore not grow with the input (a 64 MiB field
//! gives a one-line error), and no control character (an ANSI escape
//! sequence in a CSV header, say) reaches a terminal, a log, the run
//! history, the API or an e-mail as it is.

/// Characters of a value shown in a message.
pub const VALUE_CHARS: usize = 40;
/// Characters of a whole message kept where messages are stored or sent
/// (the run history, the API, notifications, the terminal).
pub const MESSAGE_CHARS: usize = 4000;

/// `bytes` as printable text of at most `max` characters: invalid UTF-8
/// replaced, control characters escaped (`\n`, `\u{1b}`), and, when cut,
/// the full length in bytes appended.
pub fn excerpt(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(max.saturating_mul(4))]);
    let mut shown = escape(text.chars().take(max));
    if text.chars().count() > max || bytes.len() > max.saturating_mul(4) {
        shown.push_str(&format!("… ({} bytes)", bytes.len()));
    }
    shown
}

/// A message cut to `max` characters, with control characters other than
/// newlines and tabs escaped.
pub fn clip(message: &str, max: usize) -> String {
    let mut shown: String = message
        .chars()
        .take(max)
        .map(|c| match c {
            '\n' | '\t' => c.to_string(),
            c if c.is_control() => c.escape_default().to_string(),
            c => c.to_string(),
        })
        .collect();
    if message.chars().nth(max).is_some() {
        shown.push_str(&format!(
            "… (cut at {max} of {} characters)",
            message.chars().count()
        ));
    }
    shown
}

/// The text of a caught panic's payload.
pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

fn escape(chars: impl Iterator<Item = char>) -> String {
    chars
        .map(|c| match c {
            c if c.is_control() => c.escape_default().to_string(),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_value_is_cut_with_its_size() {
        let value = vec![b'x'; 64 << 20];
        let shown = excerpt(&value, VALUE_CHARS);
        assert!(shown.len() < 80, "{shown}");
        assert!(
            shown.ends_with(&format!("… ({} bytes)", 64 << 20)),
            "{shown}"
        );
        assert_eq!(excerpt(b"12.345", VALUE_CHARS), "12.345");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(excerpt(b"\x1b[31mred\n", 40), "\\u{1b}[31mred\\n");
        assert_eq!(clip("a\nb\x1b", 40), "a\nb\\u{1b}");
        assert_eq!(excerpt(&[0xff, b'a'], 40), "\u{fffd}a");
    }

    #[test]
    fn a_long_message_is_clipped() {
        let message = "é".repeat(10);
        assert_eq!(clip(&message, 3), "ééé… (cut at 3 of 10 characters)");
        assert_eq!(clip("short", 10), "short");
    }
}

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

/// `bytes` as printable text of at most `max` characters (escapes
/// included): invalid UTF-8 replaced, control characters escaped (`\n`,
/// `\u{1b}`), and, when cut, the full length in bytes appended.
pub fn excerpt(bytes: &[u8], max: usize) -> String {
    let read = bytes.len().min(max.saturating_mul(4));
    let text = String::from_utf8_lossy(&bytes[..read]);
    let (mut shown, cut) = escaped(text.chars(), max, |_| false);
    if cut || read < bytes.len() {
        shown.push_str(&format!("… ({} bytes)", bytes.len()));
    }
    shown
}

/// A message cut to `max` characters (escapes included), with control
/// characters other than newlines and tabs escaped.
pub fn clip(message: &str, max: usize) -> String {
    let (mut shown, cut) = escaped(message.chars(), max, |c| c == '\n' || c == '\t');
    if cut {
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

/// `chars` with control characters escaped (but those `keep` lets
/// through), as long as the result stays within `max` characters; and
/// whether some were left out.
fn escaped(
    chars: impl Iterator<Item = char>,
    max: usize,
    keep: impl Fn(char) -> bool,
) -> (String, bool) {
    let mut shown = String::new();
    let mut length = 0;
    for c in chars {
        let piece = match c {
            c if c.is_control() && !keep(c) => c.escape_default().to_string(),
            c => c.to_string(),
        };
        length += piece.chars().count();
        if length > max {
            return (shown, true);
        }
        shown.push_str(&piece);
    }
    (shown, false)
}

/// A DECIMAL(38,2) value, given in hundredths, as text, e.g. `-12.50`.
pub fn money(cents: i128) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    format!("{sign}{}.{:02}", cents / 100, cents % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_formats_hundredths() {
        assert_eq!(money(-1250), "-12.50");
        assert_eq!(money(7), "0.07");
        assert_eq!(money(0), "0.00");
    }

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

    /// Escapes count: a value of control characters stays within its
    /// limit (the manifest fuzz target found one that did not).
    #[test]
    fn escaped_characters_count_towards_the_limit() {
        let shown = excerpt(&[0x7f; 1000], VALUE_CHARS);
        assert!(shown.chars().count() <= VALUE_CHARS + 20, "{shown}");
        assert!(
            shown.starts_with("\\u{7f}") && shown.ends_with("(1000 bytes)"),
            "{shown}"
        );
        let clipped = clip(&"\u{7f}".repeat(1000), 30);
        assert!(
            clipped.starts_with("\\u{7f}\\u{7f}\\u{7f}\\u{7f}\\u{7f}…"),
            "{clipped}"
        );
    }

    #[test]
    fn a_long_message_is_clipped() {
        let message = "é".repeat(10);
        assert_eq!(clip(&message, 3), "ééé… (cut at 3 of 10 characters)");
        assert_eq!(clip("short", 10), "short");
    }
}

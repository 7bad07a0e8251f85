//! The call log's lines: an engine input or effect in its `Debug` form, cut short.
//!
//! The log keeps the start of each line only, and some inputs carry kilobytes (an offer's SDP,
//! escaped character by character by `Debug`). Formatting them in full on every input cost the
//! page's main thread milliseconds each, at the moments when the camera and the call are being
//! set up; the formatting here stops where the line is cut.

use std::fmt::{self, Write};

/// How many characters of a line the log keeps.
pub const LINE_CHARS: usize = 160;

/// `prefix` and `value`'s `Debug` form, cut to [`LINE_CHARS`] characters; `value` is formatted
/// no further than that.
pub fn line(prefix: &str, value: &dyn fmt::Debug) -> String {
    let mut out = Upto {
        text: String::with_capacity(LINE_CHARS),
        left: LINE_CHARS,
    };
    // An error here only means the line was full.
    let _ = write!(out, "{prefix}{value:?}");
    out.text
}

/// A string that takes `left` more characters and then refuses, which ends the formatting.
struct Upto {
    text: String,
    left: usize,
}

impl Write for Upto {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if self.left == 0 {
                return Err(fmt::Error);
            }
            self.text.push(c);
            self.left -= 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn short_values_are_written_whole() {
        assert_eq!(line("in  ", &Some(3)), "in  Some(3)");
    }

    #[test]
    fn long_values_are_cut_at_the_limit_in_characters() {
        let sdp = "v=0\r\né".repeat(1_000);
        let text = line("out ", &sdp);
        assert_eq!(text.chars().count(), LINE_CHARS);
        assert!(text.starts_with("out \"v=0\\r\\né"));
    }

    /// Counts how much of it was formatted.
    struct Pieces<'a>(&'a Cell<usize>);

    impl fmt::Debug for Pieces<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            for _ in 0..10_000 {
                self.0.set(self.0.get() + 1);
                f.write_str("0123456789")?;
            }
            Ok(())
        }
    }

    #[test]
    fn formatting_stops_once_the_line_is_full() {
        let written = Cell::new(0);
        let text = line("", &Pieces(&written));
        assert_eq!(text.len(), LINE_CHARS);
        assert_eq!(written.get(), LINE_CHARS / 10 + 1);
    }
}

//! How messages are written out: `--format text|raw|hex|json`.
//!
//! | format | a message is written as |
//! |---|---|
//! | text | one line: frames separated by TAB; `\\`, `\t`, `\n`, `\r` and every other non-printable byte escaped (`\xNN`) |
//! | raw | its frames' bytes, back to back, with nothing between frames or messages |
//! | hex | one line: each frame in lower-case hex, frames separated by TAB |
//! | json | one line: a JSON array with one element per frame, a string if the frame is UTF-8, else `{"hex":"..."}` |
//!
//! Text and hex lines are unambiguous: a TAB or newline inside a frame is
//! escaped, so `cut -f2` picks the second frame. JSON is the form to read back
//! (`--input json`).

use std::io::Write;

use clap::ValueEnum;
use conduit::Message;
use serde_json::Value;

/// How each message is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One line per message, frames separated by TAB, special bytes escaped
    Text,
    /// The bytes as they are, frames and messages back to back
    Raw,
    /// One line per message, each frame in hex, frames separated by TAB
    Hex,
    /// One JSON array per message and line; a frame is a string, or
    /// {"hex":"..."} if it is not UTF-8
    Json,
}

/// The message as `format` writes it, with its line end.
pub fn render(format: Format, msg: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.byte_len() * 2 + 8);
    match format {
        Format::Text => {
            for (i, frame) in msg.frames().iter().enumerate() {
                if i > 0 {
                    out.push(b'\t');
                }
                escape_into(&mut out, frame);
            }
            out.push(b'\n');
        }
        Format::Raw => {
            for frame in msg.frames() {
                out.extend_from_slice(frame);
            }
        }
        Format::Hex => {
            for (i, frame) in msg.frames().iter().enumerate() {
                if i > 0 {
                    out.push(b'\t');
                }
                out.extend_from_slice(hex(frame).as_bytes());
            }
            out.push(b'\n');
        }
        Format::Json => {
            let frames: Vec<Value> = msg.frames().iter().map(|f| json_frame(f)).collect();
            out.extend_from_slice(Value::Array(frames).to_string().as_bytes());
            out.push(b'\n');
        }
    }
    out
}

/// Writes `msg` as `format` says, in one write so that lines from several
/// threads do not interleave.
pub fn write_message(out: &mut impl Write, format: Format, msg: &Message) -> std::io::Result<()> {
    out.write_all(&render(format, msg))
}

/// A frame as JSON: a string if it is UTF-8, else `{"hex": "..."}`.
pub fn json_frame(frame: &[u8]) -> Value {
    match std::str::from_utf8(frame) {
        Ok(s) => Value::String(s.to_owned()),
        Err(_) => serde_json::json!({ "hex": hex(frame) }),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    // Runs of valid UTF-8 text pass through; everything else is escaped.
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.extend_from_slice(b"\\\\"),
                '\t' => out.extend_from_slice(b"\\t"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                c if c.is_control() => {
                    let mut buf = [0; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
                    }
                }
                c => {
                    let mut buf = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        for b in chunk.invalid() {
            out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(format: Format, msg: Message) -> String {
        String::from_utf8(render(format, &msg)).unwrap()
    }

    #[test]
    fn text_separates_frames_with_tab_and_escapes_special_bytes() {
        let text = |m| line(Format::Text, m);
        assert_eq!(text(Message::from("hello")), "hello\n");
        assert_eq!(text(Message::from_frames(["a", "", "b"])), "a\t\tb\n");
        assert_eq!(
            text(Message::from("tab\there\nnl\\")),
            "tab\\there\\nnl\\\\\n"
        );
        assert_eq!(text(Message::from(vec![0u8, 0xff, b'z'])), "\\x00\\xffz\n");
        assert_eq!(text(Message::from("héllo ✓")), "héllo ✓\n");
    }

    #[test]
    fn raw_writes_the_bytes_back_to_back() {
        let msg = Message::from_frames([&b"a\n"[..], &[0xff, 0]]);
        assert_eq!(render(Format::Raw, &msg), b"a\n\xff\x00");
    }

    #[test]
    fn hex_is_one_line_with_tab_between_frames() {
        let msg = Message::from_frames([&b"AB"[..], &[], &[0xff, 0]]);
        assert_eq!(line(Format::Hex, msg), "4142\t\tff00\n");
    }

    #[test]
    fn json_frames_are_strings_or_hex_objects() {
        let msg = Message::from_frames([&b"a\"b\n"[..], &[0, 0xff], "é".as_bytes()]);
        assert_eq!(
            line(Format::Json, msg),
            "[\"a\\\"b\\n\",{\"hex\":\"00ff\"},\"é\"]\n"
        );
    }
}

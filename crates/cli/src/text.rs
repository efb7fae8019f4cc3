//! How messages are shown as text lines, and read back from them.

use std::io::Write;

use conduit::Message;

/// Writes `msg` as one line: frames separated by TAB, with `\\`, `\t`, `\n`, `\r`
/// and other non-printable bytes escaped, so that the line is unambiguous.
pub fn write_line(out: &mut impl Write, msg: &Message) -> std::io::Result<()> {
    let mut line = Vec::with_capacity(msg.size() + 8);
    for (i, frame) in msg.frames().iter().enumerate() {
        if i > 0 {
            line.push(b'\t');
        }
        escape_into(&mut line, frame);
    }
    line.push(b'\n');
    out.write_all(&line)
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

    fn line(msg: Message) -> String {
        let mut out = Vec::new();
        write_line(&mut out, &msg).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn frames_are_tab_separated_and_special_bytes_escaped() {
        assert_eq!(line(Message::from("hello")), "hello\n");
        assert_eq!(line(Message::from_frames(["a", "", "b"])), "a\t\tb\n");
        assert_eq!(
            line(Message::from("tab\there\nnl\\")),
            "tab\\there\\nnl\\\\\n"
        );
        assert_eq!(line(Message::from(vec![0u8, 0xff, b'z'])), "\\x00\\xffz\n");
        assert_eq!(line(Message::from("héllo ✓")), "héllo ✓\n");
    }
}

//! Output `--format text|raw|hex|json`, and input from -d, --file, standard
//! input lines and `--input json` (issue 4, "Formats").

use crate::harness::*;

/// Two text frames with a TAB, a binary frame, an empty frame.
const MULTIPART: &str = r#"["a\tb", {"hex": "00ff41"}, ""]"#;

fn pushed_once(format: &str) -> std::process::Output {
    let (ep, _dir) = ipc_endpoint();
    let pull = start(conduit().args(["pull", "--bind", &ep, "-n", "1", "--format", format]));
    let push = run(conduit().args(["push", "--connect", &ep, "--input", "json", "-d", MULTIPART]));
    assert_code(&push, 0);
    let got = finish(pull);
    assert_code(&got, 0);
    got
}

#[test]
fn text_separates_frames_by_tab_and_escapes() {
    assert_eq!(stdout(&pushed_once("text")), "a\\tb\t\\x00\\xffA\t\n");
}

#[test]
fn raw_writes_the_bytes_as_they_are() {
    assert_eq!(pushed_once("raw").stdout, b"a\tb\x00\xffA");
}

#[test]
fn hex_writes_each_frame_in_hex() {
    assert_eq!(stdout(&pushed_once("hex")), "610962\t00ff41\t\n");
}

#[test]
fn json_writes_strings_and_hex_objects() {
    assert_eq!(
        stdout(&pushed_once("json")),
        "[\"a\\tb\",{\"hex\":\"00ff41\"},\"\"]\n"
    );
}

#[test]
fn recv_has_the_formats_too() {
    let mut send = conduit()
        .args(["send", "--connect", "-", "--input", "json", "-d", MULTIPART])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let got = run(conduit()
        .args(["recv", "--connect", "-", "--format", "json"])
        .stdin(send.stdout.take().unwrap()));
    assert_code(&got, 0);
    assert_eq!(stdout(&got), "[\"a\\tb\",{\"hex\":\"00ff41\"},\"\"]\n");
    assert!(send.wait().unwrap().success());
}

#[test]
fn a_file_is_one_message_and_stdin_lines_are_one_each() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body.txt");
    std::fs::write(&file, "line 1\nline 2\n").unwrap();
    let (ep, _d) = ipc_endpoint();
    let pull = start(conduit().args(["pull", "--bind", &ep, "-n", "3"]));
    let push = run(conduit().args([
        "push",
        "--connect",
        &ep,
        "-d",
        "first",
        "--file",
        file.to_str().unwrap(),
    ]));
    assert_code(&push, 0);
    let push = run_with_input(
        conduit().args(["push", "--connect", &ep, "--file", "-"]),
        b"all of\nstdin",
    );
    assert_code(&push, 0);
    let got = finish(pull);
    assert_eq!(stdout(&got), "first\nline 1\\nline 2\\n\nall of\\nstdin\n");

    let pull = start(conduit().args(["pull", "--bind", &ep, "-n", "3"]));
    let push = run_with_input(
        conduit().args(["push", "--connect", &ep]),
        b"one\r\n\nthree\\t",
    );
    assert_code(&push, 0);
    // Lines are taken as they are: no escapes are read.
    assert_eq!(stdout(&finish(pull)), "one\n\nthree\\\\t\n");
}

#[test]
fn input_json_reads_multipart_messages_from_stdin() {
    let (ep, _d) = ipc_endpoint();
    let pull = start(conduit().args(["pull", "--bind", &ep, "-n", "2", "--format", "json"]));
    let push = run_with_input(
        conduit().args(["push", "--connect", &ep, "--input", "json"]),
        b"[\"k\", \"v\"]\n\n\"lone\"\n",
    );
    assert_code(&push, 0);
    assert_eq!(stdout(&finish(pull)), "[\"k\",\"v\"]\n[\"lone\"]\n");
}

#[test]
fn bad_json_is_a_one_line_error() {
    let (ep, _d) = ipc_endpoint();
    let push = run_with_input(
        conduit().args(["push", "--bind", &ep, "--input", "json"]),
        b"\nnot json\n",
    );
    assert_code(&push, 2);
    assert_eq!(
        stderr(&push),
        "conduit: bad message on line 2 of standard input: not JSON: \
         expected ident at line 1 column 2\n"
    );
    let push = run(conduit().args(["push", "--bind", &ep, "--input", "json", "-d", "[]"]));
    assert_code(&push, 2);
    assert_eq!(
        stderr(&push),
        "conduit: bad -d message: a message needs at least one frame ([\"\"] is one empty frame)\n"
    );
}

//! `--help` with examples, shell completions and man pages (issue 4, "Help").

use crate::harness::*;

const SUBCOMMANDS: [&str; 17] = [
    "demo",
    "send",
    "recv",
    "pair",
    "push",
    "pull",
    "req",
    "rep",
    "dealer",
    "router",
    "pub",
    "sub",
    "xpub",
    "xsub",
    "proxy",
    "completions",
    "man",
];

#[test]
fn every_subcommand_has_examples_and_messaging_ones_exit_codes() {
    for sub in SUBCOMMANDS {
        let got = run(conduit().args([sub, "--help"]));
        assert_code(&got, 0);
        let help = stdout(&got);
        assert!(help.contains("Example"), "{sub}: {help}");
        if !["demo", "completions", "man"].contains(&sub) {
            assert!(help.contains("Exit codes:\n  0 "), "{sub}: {help}");
            assert!(help.contains("  130  Ctrl-C"), "{sub}: {help}");
        }
    }
    let top = stdout(&run(conduit().arg("--help")));
    for sub in SUBCOMMANDS {
        assert!(
            top.contains(&format!("\n  {sub} ")),
            "{sub} missing from: {top}"
        );
    }
    assert!(top.contains("{\"hex\":\"...\"}"), "{top}");
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let got = run(conduit().args(["completions", shell]));
        assert_code(&got, 0);
        let script = stdout(&got);
        assert!(script.contains("conduit"), "{shell}");
        assert!(script.contains("--subscribe"), "{shell}");
    }
    let bash = stdout(&run(conduit().args(["completions", "bash"])));
    assert!(bash.contains("complete -F _conduit"), "{bash}");
}

#[test]
fn man_pages_for_conduit_and_each_subcommand() {
    let got = run(conduit().arg("man"));
    assert_code(&got, 0);
    let page = stdout(&got);
    assert!(page.starts_with(".ie \\n(.g .ds Aq \\(aq"), "{page}");
    assert!(page.contains(".TH conduit 1"), "{page}");
    assert!(page.contains("Exit codes:"), "{page}");
    for sub in SUBCOMMANDS {
        let got = run(conduit().args(["man", sub]));
        assert_code(&got, 0);
        let page = stdout(&got);
        assert!(page.contains(&format!(".TH conduit-{sub} 1")), "{page}");
        assert!(page.contains("Example"), "{sub}: {page}");
    }
    let page = stdout(&run(conduit().args(["man", "rep"])));
    assert!(page.contains("\\-\\-exec"), "{page}");
    let got = run(conduit().args(["man", "nope"]));
    assert_code(&got, 2);
    assert_eq!(
        stderr(&got),
        "conduit: no subcommand \"nope\" (see `conduit --help`)\n"
    );
}

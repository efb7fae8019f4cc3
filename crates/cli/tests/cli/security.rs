//! CURVE and PLAIN from the command line: keygen, certificates, refusals.

use std::path::Path;

use crate::harness::*;

/// `conduit keygen --cert BASE`: the printed pair, and the files written.
fn keygen(base: &Path) -> (String, String) {
    let out = run(conduit().args(["keygen", "--cert"]).arg(base));
    assert_code(&out, 0);
    let text = stdout(&out);
    let field = |name: &str| -> String {
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {text:?}"));
        let key = line.split('"').nth(1).unwrap().to_owned();
        assert_eq!(key.len(), 40, "{line}");
        key
    };
    (field("public-key"), field("secret-key"))
}

#[test]
fn keygen_prints_a_pair_and_writes_zmq_auth_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let (public, secret) = keygen(&dir.path().join("server"));
    assert_ne!(public, secret);
    let public_cert = std::fs::read_to_string(dir.path().join("server.key")).unwrap();
    let secret_cert = std::fs::read_to_string(dir.path().join("server.key_secret")).unwrap();
    assert!(public_cert.contains(&format!("    public-key = \"{public}\"")));
    assert!(!public_cert.contains(&secret));
    assert!(secret_cert.contains(&format!("    secret-key = \"{secret}\"")));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("server.key_secret"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // Two runs, two pairs.
    assert_ne!(keygen(&dir.path().join("other")).0, public);
}

#[test]
fn curve_req_rep_with_certificates_lets_the_known_client_in_only() {
    let dir = tempfile::tempdir().unwrap();
    let allowed = dir.path().join("allowed");
    std::fs::create_dir(&allowed).unwrap();
    keygen(&dir.path().join("server"));
    keygen(&allowed.join("client"));
    // The allow directory holds public certificates only.
    std::fs::rename(
        allowed.join("client.key_secret"),
        dir.path().join("client.key_secret"),
    )
    .unwrap();
    let ep = free_tcp_endpoint();
    let cert = |name: &str| dir.path().join(name).display().to_string();
    let rep = start(conduit().args([
        "rep",
        "--bind",
        &ep,
        "--echo",
        "--count",
        "1",
        "--timeout",
        "20",
        "-v",
        "--curve-server",
        "--curve-secret-key",
        &cert("server.key_secret"),
        "--curve-allow",
        &allowed.display().to_string(),
    ]));
    // A client with a key of its own that the server does not know: refused,
    // and it gives up after its timeout.
    let stranger = run(conduit().args([
        "req",
        "--connect",
        &ep,
        "-d",
        "let me in",
        "--timeout",
        "2",
        "--curve-server-key",
        &cert("server.key"),
    ]));
    assert_code(&stranger, 1);
    assert_eq!(stdout(&stranger), "");
    // The known client: its request is answered.
    let known = run(conduit().args([
        "req",
        "--connect",
        &ep,
        "-d",
        "hello",
        "--timeout",
        "20",
        "--curve-server-key",
        &cert("server.key"),
        "--curve-secret-key",
        &cert("client.key_secret"),
    ]));
    assert_code(&known, 0);
    assert_eq!(stdout(&known), "hello\n");
    let rep = finish(rep);
    assert_code(&rep, 0);
    assert_eq!(stdout(&rep), "hello\n", "only the known client's request");
    let log = stderr(&rep);
    assert!(
        log.contains("access denied") && log.contains("is not allowed"),
        "{log}"
    );
}

#[test]
fn plain_send_recv_refuses_a_wrong_password_and_serves_the_next_peer() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(&users, "# user=password\nadmin=secret\n").unwrap();
    for (ep, _guard) in endpoints() {
        let recv = start(conduit().args([
            "recv",
            "--bind",
            &ep,
            "--count",
            "1",
            "--timeout",
            "20",
            "--plain-server",
            "--plain-users",
            &users.display().to_string(),
        ]));
        let wrong = run(conduit().args([
            "send",
            "--connect",
            &ep,
            "-d",
            "guessing",
            "--timeout",
            "10",
            "--plain-user",
            "admin",
            "--plain-password",
            "guess",
        ]));
        assert_code(&wrong, 2);
        assert!(stderr(&wrong).contains("400") || stderr(&wrong).contains("wrong password"));
        let right = run(conduit().args([
            "send",
            "--connect",
            &ep,
            "-d",
            "signed in",
            "--timeout",
            "10",
            "--plain-user",
            "admin",
            "--plain-password",
            "secret",
        ]));
        assert_code(&right, 0);
        let recv = finish(recv);
        assert_code(&recv, 0);
        assert_eq!(stdout(&recv), "signed in\n");
        assert!(
            stderr(&recv).contains("refused a peer"),
            "{}",
            stderr(&recv)
        );
    }
}

#[test]
fn bad_keys_are_usage_errors() {
    let out = run(conduit().args([
        "req",
        "--connect",
        "tcp://127.0.0.1:1",
        "-d",
        "x",
        "--curve-server-key",
        "not-a-key",
    ]));
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("--curve-server-key"),
        "{}",
        stderr(&out)
    );
    let out = run(conduit().args(["rep", "--bind", "tcp://127.0.0.1:*", "--curve-server"]));
    assert_code(&out, 2);
}

#[test]
fn over_ipc_peers_are_allowed_by_uid() {
    let uid = std::fs::metadata("/proc/self").map_or(0, |m| {
        use std::os::unix::fs::MetadataExt;
        m.uid()
    });
    let (ep, _dir) = ipc_endpoint();
    for (allow, delivered) in [
        (format!("uid:{uid}"), true),
        (format!("uid:{}", uid + 1), false),
    ] {
        let recv = start(conduit().args([
            "recv",
            "--bind",
            &ep,
            "--count",
            "1",
            "--timeout",
            "3",
            "--allow",
            &allow,
        ]));
        let send = run(conduit().args(["send", "--connect", &ep, "-d", "local", "--timeout", "3"]));
        let recv = finish(recv);
        if delivered {
            assert_code(&send, 0);
            assert_code(&recv, 0);
            assert_eq!(stdout(&recv), "local\n");
        } else {
            assert_eq!(stdout(&recv), "");
            assert!(
                stderr(&recv).contains("is not allowed"),
                "{}",
                stderr(&recv)
            );
        }
    }
}

#[test]
fn a_curve_broker_forwards_between_secured_peers_and_refuses_wrong_keys() {
    // The proxy is a CURVE server on both sides, with a key pair per side; its
    // frontend lets in only the clients in `allowed`.
    let dir = tempfile::tempdir().unwrap();
    let allowed = dir.path().join("allowed");
    std::fs::create_dir(&allowed).unwrap();
    keygen(&dir.path().join("front"));
    keygen(&dir.path().join("back"));
    keygen(&dir.path().join("worker"));
    keygen(&allowed.join("client"));
    let cert = |name: &str| dir.path().join(name).display().to_string();
    let client_secret = allowed.join("client.key_secret").display().to_string();
    let allowed_dir = allowed.display().to_string();
    let (proxy, front, back, _ipc) = start_broker(&[
        "-n",
        "2",
        "--timeout",
        "20",
        "-v",
        "--capture",
        "--front-curve-server",
        "--front-curve-secret-key",
        &cert("front.key_secret"),
        "--front-curve-allow",
        &allowed_dir,
        "--back-curve-server",
        "--back-curve-secret-key",
        &cert("back.key_secret"),
    ]);
    let worker = start(conduit().args([
        "rep",
        "--connect",
        &back,
        "--exec",
        "tr a-z A-Z",
        "-n",
        "1",
        "--timeout",
        "20",
        "--curve-server-key",
        &cert("back.key"),
        "--curve-secret-key",
        &cert("worker.key_secret"),
    ]));
    // A client of the frontend expecting `server`'s key, as the key pair in
    // `secret` or as a new one.
    let req = |data: &str, timeout: &str, server: &str, secret: Option<&str>| {
        let mut cmd = conduit();
        cmd.args(["req", "--connect", &front, "-d", data, "--timeout", timeout])
            .args(["--curve-server-key", &cert(server)]);
        if let Some(secret) = secret {
            cmd.args(["--curve-secret-key", secret]);
        }
        run(&mut cmd)
    };
    // A client whose key pair the frontend does not know: refused by the
    // proxy, nothing forwarded, and it gives up after its timeout.
    let stranger = req("let me in", "2", "front.key", None);
    assert_code(&stranger, 1);
    assert_eq!(stdout(&stranger), "");
    // A known client that expects the backend's server key: its HELLO does
    // not open at the frontend, so it never gets in either.
    let wrong_server = req("wrong server", "2", "back.key", Some(&client_secret));
    assert_code(&wrong_server, 1);
    assert_eq!(stdout(&wrong_server), "");
    // The known client with the frontend's key: through the proxy to the
    // worker and back, sealed on both sides.
    let client = req("hello", "20", "front.key", Some(&client_secret));
    assert_code(&client, 0);
    assert_eq!(stdout(&client), "HELLO\n");
    assert_code(&finish(worker), 0);
    let proxy = finish(proxy);
    assert_code(&proxy, 0);
    let log = stderr(&proxy);
    // Only the known client's request and its reply passed.
    let captured: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("> ") || l.starts_with("< "))
        .collect();
    assert_eq!(captured.len(), 2, "{log}");
    assert!(captured[0].ends_with("\thello"), "{log}");
    assert!(captured[1].ends_with("\tHELLO"), "{log}");
    assert!(
        log.contains("access denied") && log.contains("is not allowed"),
        "{log}"
    );
}

#[test]
fn proxy_security_errors_name_the_side() {
    // A streamer with `extra` options: refused as a usage error, the message.
    let refused = |extra: &[&str]| {
        let out = run(conduit()
            .args(["proxy", "streamer", "--front-bind", "tcp://127.0.0.1:*"])
            .args(["--back-bind", "tcp://127.0.0.1:*"])
            .args(extra));
        assert_code(&out, 2);
        stderr(&out)
    };
    let err = refused(&["--back-curve-server-key", "not-a-key"]);
    assert!(err.contains("--back-curve-server-key"), "{err}");
    // Each side's options are checked on their own: a frontend CURVE server
    // needs the frontend's secret key, not the backend's.
    let err = refused(&[
        "--front-curve-server",
        "--back-curve-secret-key",
        "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7",
    ]);
    assert!(err.contains("--front-curve-secret-key"), "{err}");
}

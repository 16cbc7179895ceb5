//! MFA against independent implementations: pyotp computes codes from our `otpauth://` URIs,
//! and zbar decodes our QR images back to the URI (SECURITY.md #25: the QR payload equals the
//! URI).
//!
//! Needs `python3` with `pyotp` and `zbarimg` (Debian's `zbar-tools`). Where one is missing
//! the test prints a note and passes, except under `CI=true`, where it fails naming what to
//! install.

use std::process::Command;

use authkit::clock::Timestamp;
use authkit::mfa::{
    TotpAlgorithm, TotpCheck, TotpCode, TotpConfig, TotpSecret, parse_otpauth_uri, qr_png_data_uri,
    qr_svg,
};
use authkit::rng::OsRandom;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

const PYOTP_AT: &str = "import pyotp,sys; print(pyotp.parse_uri(sys.argv[1]).at(int(sys.argv[2])))";

/// Whether a tool is present; under CI its absence is a failure.
fn available(what: &str, probe: &mut Command, install: &str) -> bool {
    let ok = probe.output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{what} is missing: install it ({install})"
        );
        eprintln!("skipping: {what} is missing ({install})");
    }
    ok
}

fn config(algorithm: TotpAlgorithm, digits: u8) -> TotpConfig {
    let mut config = TotpConfig::default();
    config.issuer = "Acme Corp".to_owned();
    config.algorithm = algorithm;
    config.digits = digits;
    config
}

#[test]
fn pyotp_codes_from_our_uri_are_accepted() {
    if !available(
        "python3 with pyotp",
        Command::new("python3").args(["-c", "import pyotp"]),
        "pip install pyotp",
    ) {
        return;
    }
    for (algorithm, digits, secret_len) in [
        (TotpAlgorithm::Sha1, 6, 20),
        (TotpAlgorithm::Sha256, 8, 32),
        (TotpAlgorithm::Sha512, 8, 64),
    ] {
        let config = config(algorithm, digits);
        let secret = TotpSecret::generate(&OsRandom, secret_len).unwrap();
        let uri = config.otpauth_uri(&secret, "alice@example.com").unwrap();
        for t in [59i64, 1_700_000_000, 20_000_000_000] {
            let out = Command::new("python3")
                .args(["-c", PYOTP_AT, uri.as_str(), &t.to_string()])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "pyotp failed for {algorithm}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8(out.stdout).unwrap();
            let code = TotpCode::parse(text.trim(), digits).unwrap();
            let now = Timestamp::from_unix_seconds(t);
            let step = config.current_step(now).unwrap();
            assert_eq!(
                config.check(&secret, &code, now, None),
                TotpCheck::Accepted { step },
                "{algorithm}/{digits} at {t}"
            );
            assert_eq!(config.code_at(&secret, step).as_str(), code.as_str());
        }
    }
}

#[test]
fn zbar_reads_our_qr_code_back_to_the_uri() {
    if !available(
        "zbarimg",
        Command::new("zbarimg").arg("--version"),
        "apt-get install zbar-tools",
    ) {
        return;
    }
    let config = config(TotpAlgorithm::Sha1, 6);
    let secret = TotpSecret::generate(&OsRandom, 20).unwrap();
    let uri = config
        .otpauth_uri(&secret, "alice+mfa@example.com")
        .unwrap();

    let data_uri = qr_png_data_uri(&uri).unwrap();
    let (head, b64) = data_uri.split_once(',').unwrap();
    assert_eq!(head, "data:image/png;base64");
    let png = STANDARD.decode(b64).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qr.png");
    std::fs::write(&path, png).unwrap();
    let out = Command::new("zbarimg")
        .args(["--quiet", "--raw"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "zbarimg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoded = String::from_utf8(out.stdout).unwrap();
    assert_eq!(decoded.trim_end_matches('\n'), uri.as_str());

    // SECURITY.md #25: the secret in the URI is at least 160 bits.
    let parsed = parse_otpauth_uri(decoded.trim_end()).unwrap();
    assert!(parsed.secret.expose().len() >= 20);
    assert_eq!(parsed.secret.expose(), secret.expose());

    let svg = qr_svg(&uri).unwrap();
    assert!(svg.starts_with("<?xml") || svg.starts_with("<svg"));
    assert!(svg.contains("</svg>"));
}

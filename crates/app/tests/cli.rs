//! The `relay` CLI as an operator uses it.

mod support;

use std::io::Write as _;
use std::process::Command;

use relay_postgres::testing::TestDb;
use secrecy::SecretString;
use support::{RELAY, relay, relay_ok};

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["migrate", "--help"],
        vec!["org", "--help"],
        vec!["org", "create", "--help"],
        vec!["org", "list", "--help"],
        vec!["secret", "--help"],
        vec!["secret", "add", "--help"],
        vec!["secret", "list", "--help"],
        vec!["secret", "revoke", "--help"],
        vec!["contacts", "--help"],
        vec!["contacts", "import", "--help"],
    ] {
        let out = Command::new(RELAY)
            .args(&args)
            .env_clear()
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage: relay"),
            "{args:?}"
        );
    }
}

#[test]
fn configuration_errors_name_the_variable_and_exit_78() {
    let out = Command::new(RELAY)
        .arg("serve")
        .env_clear()
        .env("REDIS_URL", "redis://127.0.0.1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "configuration error: DATABASE_URL is not set"
    );

    let out = Command::new(RELAY)
        .env_clear()
        .env("DATABASE_URL", "postgres://u:hunter2@127.0.0.1/db")
        .env("REDIS_URL", "redis://127.0.0.1")
        .env("LOOKUP_TIMEOUT_MS", "soon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("LOOKUP_TIMEOUT_MS is invalid"), "{stderr}");
    assert!(!stderr.contains("hunter2"));

    let out = Command::new(RELAY)
        .args(["org", "list"])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("DATABASE_URL is not set"));
}

#[test]
fn unreachable_database_fails_the_command_without_echoing_the_password() {
    let url = SecretString::from("postgres://u:hunter2@127.0.0.1:1/db");
    let out = relay(&url, &["org", "list"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot connect to Postgres at DATABASE_URL"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"));
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn organizations_and_secrets_round_trip_through_the_cli() {
    let db = TestDb::create().await;
    let url = db.url();
    let id = relay_ok(
        &url,
        &["org", "create", "--name", "Acme Corp", "--region", "ca"],
    );
    assert_eq!(id.len(), 36, "stdout is only the id: {id:?}");
    assert_eq!(
        relay_ok(&url, &["org", "list"]),
        format!("{id}\tCA\tAcme Corp")
    );

    let out = relay(&url, &["org", "create", "--name", "X", "--region", "ZZ"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--region"));
    assert!(out.stdout.is_empty());

    let token = relay_ok(&url, &["secret", "add", &id]);
    assert_eq!(token.len(), 43, "32 random bytes, base64url");
    let listed = relay_ok(&url, &["secret", "list", &id]);
    assert!(
        listed.ends_with("\tlive") && !listed.contains(&token),
        "{listed}"
    );
    let secret_id = listed.split('\t').next().unwrap();
    let revoked = relay_ok(&url, &["secret", "revoke", secret_id]);
    assert!(revoked.starts_with(secret_id));
    assert!(relay_ok(&url, &["secret", "list", &id]).contains("\trevoked "));

    let missing = "00000000-0000-0000-0000-000000000000";
    for args in [
        ["secret", "add", missing],
        ["secret", "list", missing],
        ["secret", "revoke", missing],
    ] {
        let out = relay(&url, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not found"),
            "{args:?}"
        );
    }
    let out = relay(&url, &["secret", "add", "not-a-uuid"]);
    assert_eq!(out.status.code(), Some(2), "clap rejects a malformed id");
}

#[tokio::test]
async fn import_reports_rejected_lines_and_is_idempotent() {
    let db = TestDb::create().await;
    let url = db.url();
    let org = relay_ok(&url, &["org", "create", "--name", "Acme", "--region", "CA"]);
    let mut csv = tempfile::NamedTempFile::new().unwrap();
    write!(
        csv,
        "id,Phone,last_name,first_name\n\
         1,(416) 555-0100,Morgan,Alex\n\
         2,not a phone,Row,Bad\n\
         3,+44 20 7946 0958,Brit,Ann\n\
         4,anonymous,Anon,Ymous\n\
         5,416.555.0101,Lee\n\
         6,,Empty,Phone\n"
    )
    .unwrap();
    let path = csv.path().to_str().unwrap();

    let out = relay(&url, &["contacts", "import", &org, path]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "inserted=3 updated=0 unchanged=0 rejected=3"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 3: phone is not a valid number (region CA)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 5: phone is a withheld-number placeholder"),
        "{stderr}"
    );
    assert!(stderr.contains("line 7: no phone number"), "{stderr}");

    assert_eq!(
        relay_ok(&url, &["contacts", "import", &org, path]),
        "inserted=0 updated=0 unchanged=3 rejected=3"
    );
    let stored: Vec<(String, Option<String>)> = sqlx_rows(
        &db,
        "SELECT phone_e164, first_name FROM contacts ORDER BY phone_e164",
    )
    .await;
    assert_eq!(
        stored,
        [
            ("+14165550100".to_owned(), Some("Alex".to_owned())),
            ("+14165550101".to_owned(), None),
            ("+442079460958".to_owned(), Some("Ann".to_owned())),
        ]
    );

    let mut no_phone = tempfile::NamedTempFile::new().unwrap();
    write!(no_phone, "first_name,number\nA,1\n").unwrap();
    let out = relay(
        &url,
        &[
            "contacts",
            "import",
            &org,
            no_phone.path().to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no `phone` column"));
}

async fn sqlx_rows(db: &TestDb, sql: &'static str) -> Vec<(String, Option<String>)> {
    use relay_postgres::testing::sqlx;
    sqlx::query_as(sql).fetch_all(db.pool()).await.unwrap()
}

#[tokio::test]
async fn unreadable_csv_rows_are_reported_and_the_rest_imported() {
    let db = TestDb::create().await;
    let url = db.url();
    let org = relay_ok(&url, &["org", "create", "--name", "Acme", "--region", "CA"]);
    let mut csv = tempfile::NamedTempFile::new().unwrap();
    csv.write_all(b"first_name,phone\nAl\xffex,4165550100\nSam,4165550101\n")
        .unwrap();
    let out = relay(
        &url,
        &["contacts", "import", &org, csv.path().to_str().unwrap()],
    );
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "inserted=1 updated=0 unchanged=0 rejected=1"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2: unreadable row: not valid UTF-8")
    );
}

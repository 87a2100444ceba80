//! Secure tokens, unknown ids and hostile id text.

mod common;

use common::{store, temp_db};
use sessiondb::{Error, IdSpec, Save, SecureToken, SessionId};

#[test]
fn wrong_token_is_a_security_error_everywhere() -> Result<(), Error> {
    let db = temp_db();
    let (store, _clock) = store(&db);
    let c = store.create(b"secret", b"s")?;
    let wrong = SecureToken::parse("not-the-token")?;
    assert!(matches!(store.load(&c.id, &wrong), Err(Error::Security)));
    assert!(matches!(store.fetch_state(&c.id, &wrong, Some(0)), Err(Error::Security)));
    assert!(matches!(store.touch(&c.id, &wrong), Err(Error::Security)));
    let res = store.store_state(&c.id, &wrong, Save::new(c.version, b"stolen", b""));
    assert!(matches!(res, Err(Error::Security)), "{res:?}");
    assert_eq!(store.load(&c.id, &c.token)?.session_data, b"secret");
    // Another session's genuine token does not open this one.
    let other = store.create(b"", b"")?;
    assert!(matches!(store.load(&c.id, &other.token), Err(Error::Security)));
    Ok(())
}

#[test]
fn the_file_does_not_hold_the_token() -> Result<(), Error> {
    let db = temp_db();
    let (store, _clock) = store(&db);
    let c = store.create(b"", b"")?;
    drop(store);
    let bytes = std::fs::read(&db.path)?;
    let token = c.token.as_str().as_bytes();
    assert!(!bytes.windows(token.len()).any(|w| w == token));
    let id = c.id.as_str().as_bytes();
    assert!(bytes.windows(id.len()).any(|w| w == id), "sanity: the id itself is stored");
    Ok(())
}

#[test]
fn unknown_ids_are_not_found() -> Result<(), Error> {
    let db = temp_db();
    let (store, _clock) = store(&db);
    let c = store.create(b"", b"")?;
    let unknown = SessionId::parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")?;
    assert!(matches!(store.load(&unknown, &c.token), Err(Error::NotFound)));
    assert!(matches!(store.touch(&unknown, &c.token), Err(Error::NotFound)));
    let res = store.store_state(&unknown, &c.token, Save::new(c.version, b"", b""));
    assert!(matches!(res, Err(Error::NotFound)), "{res:?}");
    assert!(!store.exists(&unknown)?);
    assert!(!store.delete(&unknown)?);
    assert_eq!(store.inspect(&unknown)?, None);
    Ok(())
}

#[test]
fn hostile_id_text_is_refused_without_panic() {
    let long = "a".repeat(100_000);
    for text in ["", " ", "a\nb", "a=b", "a;b", "\"quoted\"", "ü", "\u{0}", long.as_str()] {
        assert!(matches!(SessionId::parse(text), Err(Error::InvalidInput(_))), "{text:?}");
    }
}

#[test]
fn generated_ids_follow_the_spec() -> Result<(), Error> {
    let db = temp_db();
    let clock = sessiondb::ManualClock::new(common::T0);
    let spec = IdSpec::new(40, "0123456789abcdef")?; // 160 bits
    let store = common::builder(&db.path, &clock).id_spec(spec).open()?;
    let c = store.create(b"", b"")?;
    assert_eq!(c.id.as_str().len(), 40);
    assert!(c.id.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(matches!(IdSpec::new(31, "0123456789abcdef"), Err(Error::InvalidInput(_))));
    Ok(())
}

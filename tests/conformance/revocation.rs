//! Revocation chains: revoking an id revokes the session it was rotated into, and so on;
//! `revoke_with_token` and `revoke_named` check the tokens (and fingerprints) they are given,
//! and a retired id's token ends its chain only shortly after the rotation.

use std::time::Duration;

use sessiondb::{Engine, Error, NewSession};

use crate::{SEC, Settings, Subject, open, unknown_id, wrong_token};

pub fn revoking_a_rotated_id_revokes_the_chain<S: Subject>(subject: &S) -> Result<(), Error> {
    // Windows short enough to end before the idle timeout (10 s).
    for forward in [0, 2] {
        let t = open(subject, &Settings::default());
        let (e, clock) = (&t.engine, &t.clock);
        let a = e.create_with(NewSession::new(b"cart", b""))?;
        let b = e.regenerate(&a.id, &a.token, Duration::from_secs(forward))?;
        let c = e.regenerate(&b.id, &b.token, Duration::from_secs(forward))?;
        let bystander = e.create_with(NewSession::new(b"other", b""))?;
        // After any forwarding window too: the tombstone keeps its successor until it goes.
        clock.advance(forward * SEC + 1);
        assert!(e.revoke(&a.id)?, "forward {forward}: the live end of the chain was revoked");
        for (id, token) in [(&a.id, &a.token), (&b.id, &b.token), (&c.id, &c.token)] {
            refused!(e.load(id, token), Error::Revoked);
        }
        assert!(!e.revoke(&a.id)?, "nothing left to revoke");
        // The chain cannot be rotated back to life.
        refused!(e.regenerate(&c.id, &c.token, Duration::ZERO), Error::Revoked);
        assert_eq!(e.load(&bystander.id, &bystander.token)?.session_data, b"other");
    }
    Ok(())
}

pub fn revoking_inside_the_forwarding_window_stops_the_forwarding<S: Subject>(
    subject: &S,
) -> Result<(), Error> {
    let t = open(subject, &Settings::default());
    let e = &t.engine;
    let a = e.create_with(NewSession::new(b"cart", b""))?;
    let b = e.regenerate(&a.id, &a.token, Duration::from_secs(30))?;
    refused!(e.load(&a.id, &a.token), Error::Rotated { .. });
    assert!(e.revoke(&a.id)?);
    refused!(e.load(&a.id, &a.token), Error::Revoked);
    refused!(e.load(&b.id, &b.token), Error::Revoked);

    // A revoke first leaves nothing to rotate.
    let c = e.create_with(NewSession::new(b"cart", b""))?;
    assert!(e.revoke(&c.id)?);
    refused!(e.regenerate(&c.id, &c.token, Duration::from_secs(30)), Error::Revoked);
    Ok(())
}

pub fn revoke_with_token_checks_the_token_of_the_id_it_was_given<S: Subject>(
    subject: &S,
) -> Result<(), Error> {
    for forward in [0, 2] {
        let t = open(subject, &Settings::default());
        let e = &t.engine;
        let wrong = wrong_token();
        let a = e.create_with(NewSession::new(b"cart", b""))?;
        let b = e.regenerate(&a.id, &a.token, Duration::from_secs(forward))?;
        // A wrong token revokes nothing, neither through the retired id nor the live one.
        for id in [&a.id, &b.id] {
            refused!(e.revoke_with_token(id, &wrong), Error::Security);
        }
        // The successor's token does not open the retired id either.
        refused!(e.revoke_with_token(&a.id, &b.token), Error::Security);
        assert_eq!(e.load(&b.id, &b.token)?.session_data, b"cart");
        // The retired id's own token ends the chain.
        assert!(e.revoke_with_token(&a.id, &a.token)?);
        refused!(e.load(&b.id, &b.token), Error::Revoked);
        assert!(!e.revoke_with_token(&a.id, &a.token)?, "nothing left");
        assert!(!e.revoke_with_token(&unknown_id(), &wrong)?, "unknown: nothing to revoke");
    }
    Ok(())
}

pub fn revoke_named_skips_wrong_tokens_and_other_clients<S: Subject>(
    subject: &S,
) -> Result<(), Error> {
    let t = open(subject, &Settings::default());
    let e = &t.engine;
    let fp = b"Mozilla/5.0 Firefox/140.0";
    let a = e.create_with(NewSession::new(b"a", b""))?;
    let b = e.create_with(NewSession::new(b"b", b""))?;
    let f = e.create_with(NewSession::new(b"f", b"").fingerprint(fp))?;
    let plain = e.create_with(NewSession::new(b"plain", b""))?;
    // Every pair skipped: Security, and nothing written.
    let res = e.revoke_named(vec![
        (a.id.clone(), wrong_token(), None),
        (b.id.clone(), a.token.clone(), None),
        (f.id.clone(), f.token.clone(), Some(b"curl/8.5".to_vec())),
    ]);
    refused!(res, Error::Security);
    for s in [&a, &b, &f] {
        assert!(e.load(&s.id, &s.token).is_ok(), "{}", s.id);
    }
    // The pairs that hold count; the others are skipped.
    let revoked = e.revoke_named(vec![
        (a.id.clone(), wrong_token(), None),
        (b.id.clone(), b.token.clone(), None),
        (f.id.clone(), f.token.clone(), Some(fp.to_vec())),
        // A session created without a fingerprint is anyone's to end with its token.
        (plain.id.clone(), plain.token.clone(), Some(b"any agent".to_vec())),
    ])?;
    assert_eq!(revoked, 3);
    assert_eq!(e.load(&a.id, &a.token)?.session_data, b"a");
    for s in [&b, &f, &plain] {
        refused!(e.load(&s.id, &s.token), Error::Revoked);
    }
    // Unknown ids are nothing to revoke, whatever the token.
    assert_eq!(e.revoke_named(vec![(unknown_id(), wrong_token(), None)])?, 0);
    Ok(())
}

pub fn a_kept_pre_login_token_ends_nothing_after_the_race_window<S: Subject>(
    subject: &S,
) -> Result<(), Error> {
    const DAY: u64 = 24 * 3600 * SEC;
    for forward in [0, 30] {
        let week = Some(Duration::from_secs(7 * 24 * 3600));
        let t = open(subject, &Settings { idle_timeout: week, ..Settings::default() });
        let (e, clock) = (&t.engine, &t.clock);
        let planted = e.create_with(NewSession::new(b"cart", b""))?;
        let victim = e.regenerate(&planted.id, &planted.token, Duration::from_secs(forward))?;
        // A day later the planted token ends nothing.
        clock.advance(DAY);
        refused!(e.load(&planted.id, &planted.token), Error::Revoked);
        assert!(!e.revoke_with_token(&planted.id, &planted.token)?, "forward {forward}");
        assert!(e.load(&victim.id, &victim.token).is_ok(), "forward {forward}: logged out");
        // Within a minute of a rotation (after its window) the old token ends the new session:
        // a log-out that raced the log-in.
        let newer = e.regenerate(&victim.id, &victim.token, Duration::from_secs(forward))?;
        clock.advance(forward * SEC + 60 * SEC - 1);
        assert!(e.revoke_with_token(&victim.id, &victim.token)?, "forward {forward}");
        refused!(e.load(&newer.id, &newer.token), Error::Revoked);
    }
    Ok(())
}

//! Micro-benchmarks of the per-request pieces that `benches/ops.rs` does not cover: the serde
//! codec on a session-sized value, parsing the two cookie values, and id generation (through
//! `create`, since `IdSpec::generate` is not public: `create` = 192-bit id + 258-bit token from
//! the OS random source, SHA-256 of the token, and one durable commit).
//!
//! `cargo bench --bench micro`. Quick: 10–20 samples of 1–2 s.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};
use sessiondb::{SecureToken, SessionId, Sharing, Store};

/// A typical web session: a user, a few flags and a 512-byte blob.
#[derive(Serialize, Deserialize)]
struct WebSession {
    user: String,
    roles: Vec<String>,
    csrf: [u8; 32],
    cart: Vec<u32>,
    blob: Vec<u8>,
}

fn codec(c: &mut Criterion) {
    let value = WebSession {
        user: "ann@example.org".into(),
        roles: vec!["admin".into(), "editor".into()],
        csrf: [7; 32],
        cart: (0..16).collect(),
        blob: vec![9; 512],
    };
    let bytes = sessiondb::encode(&value).expect("encode");
    let mut g = c.benchmark_group("micro/codec");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(1))
        .warm_up_time(Duration::from_millis(500));
    g.bench_function("encode_web_session", |b| b.iter(|| sessiondb::encode(black_box(&value))));
    g.bench_function("decode_web_session", |b| {
        b.iter(|| sessiondb::decode::<WebSession>(black_box(&bytes)));
    });
    g.finish();
}

fn ids(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut g = c.benchmark_group("micro/id");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(1))
        .warm_up_time(Duration::from_millis(500));
    let store = Store::builder(dir.path().join("ids.redb"))
        .sharing(Sharing::SingleProcess)
        .cleanup_interval(None)
        .open()
        .expect("open");
    let made = store.create(b"x", b"y").expect("create");
    let (id, token) = (made.id.to_string(), made.token.as_str().to_string());
    g.bench_function("parse_cookie_values", |b| {
        b.iter(|| {
            black_box(SessionId::parse(black_box(&id)).expect("id"));
            black_box(SecureToken::parse(black_box(&token)).expect("token"));
        });
    });
    g.sample_size(10).measurement_time(Duration::from_secs(2));
    g.bench_function(BenchmarkId::new("create_with_new_id", "single_process"), |b| {
        b.iter(|| black_box(store.create(b"x", b"y").expect("create")));
    });
    g.finish();
}

criterion_group!(benches, codec, ids);
criterion_main!(benches);

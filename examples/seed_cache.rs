//! Seeds a desktop cache for the cold-start benchmark, through the core's cache API (the same
//! `apply_batch` path live events take): N chat/DM messages plus posts.
//!
//! `cargo run --release --example seed_cache -- <data dir> [messages] [posts]`

use papo_client::Cache;
use papo_protocol::*;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(
        args.next()
            .expect("usage: seed_cache <data dir> [messages] [posts]"),
    );
    let messages: u64 = args.next().map(|a| a.parse().unwrap()).unwrap_or(100_000);
    let posts: u64 = args.next().map(|a| a.parse().unwrap()).unwrap_or(2_000);
    std::fs::create_dir_all(&dir).unwrap();
    let started = std::time::Instant::now();
    let cache = Cache::open(dir.join("cache.sqlite")).unwrap();
    let me = "ana";
    cache.set_me(me).unwrap();
    let peers = [
        "joao", "bia", "caio", "duda", "edu", "fabi", "gabi", "heitor",
    ];
    let words = [
        "oi",
        "bom dia",
        "vamos almoçar?",
        "o deploy passou",
        "olha isso",
        "reunião às 15h",
        "kkkk",
        "valeu!",
        "tudo certo por aqui",
        "amanhã cedo",
        "café?",
        "mandei o link",
    ];
    let base: Millis = 1_790_000_000_000;
    let (mut public_seq, mut private_seq) = (0u64, 0u64);
    let mut batch = Vec::with_capacity(1000);
    let total = messages + posts;
    for i in 0..total {
        let at = base + i as i64 * 1000;
        let peer = peers[(i % peers.len() as u64) as usize];
        let text = format!("{} #{i}", words[(i * 7 % words.len() as u64) as usize]);
        let (stream, seq, body) = if i % (total / posts.max(1)).max(1) == 0 {
            public_seq += 1;
            (
                Stream::Public,
                public_seq,
                EventBody::PostCreated(Post {
                    id: i as i64 + 1,
                    author: peer.into(),
                    text: format!("Post {i}: {text}"),
                    at,
                    edited_at: None,
                    like_count: (i % 13) as i64,
                    comment_count: (i % 5) as i64,
                    share_count: 0,
                    share_of: None,
                }),
            )
        } else if i % 3 == 0 {
            private_seq += 1;
            let (from, to) = if i % 2 == 0 { (peer, me) } else { (me, peer) };
            (
                Stream::Private,
                private_seq,
                EventBody::DmMessage(DirectMessage {
                    id: i as i64 + 1,
                    from: from.into(),
                    to: to.into(),
                    text,
                    at,
                    reply_to: None,
                }),
            )
        } else {
            public_seq += 1;
            (
                Stream::Public,
                public_seq,
                EventBody::ChatMessage(ChatMessage {
                    id: i as i64 + 1,
                    from: peer.into(),
                    text,
                    at,
                    reply_to: None,
                }),
            )
        };
        batch.push(LogEvent {
            stream,
            seq,
            at,
            cid: None,
            body,
        });
        if batch.len() == 1000 {
            cache.apply_batch(me, &batch).unwrap();
            batch.clear();
        }
    }
    cache.apply_batch(me, &batch).unwrap();
    // A cache the app has run on is indexed (its writer thread indexes in the background);
    // leaving a million rows to index would make the benchmark's first start do it.
    while cache.index_step().unwrap() {}
    println!(
        "seeded {} in {:.1} s: {messages} messages, {posts} posts (public seq {public_seq}, private seq {private_seq})",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
}

//! The server's unit tests: the streamed body and shared encodings, `/probe`'s query.

use super::*;
use crate::checks::CheckKind;
use crate::metrics::Format;
use http_body_util::BodyExt;

/// An encoder that counts its runs in `runs` and writes `n` pieces naming its run.
fn counting(
    runs: &Arc<AtomicUsize>,
    n: usize,
) -> impl FnOnce(&mut dyn FnMut(Bytes) -> bool) -> bool + Send + 'static {
    let runs = runs.clone();
    move |send| {
        let run = runs.fetch_add(1, Ordering::SeqCst);
        (0..n).all(|i| send(Bytes::from(format!("run {run} piece {i}\n"))))
    }
}

fn pieces(n: usize) -> impl FnOnce(&mut dyn FnMut(Bytes) -> bool) -> bool + Send + 'static {
    move |send| (0..n).all(|i| send(Bytes::from(format!("piece {i}\n"))))
}

#[tokio::test]
async fn a_streamed_body_carries_every_piece_then_ends() {
    let (body, encoder) = Streamed::spawn(pieces(50));
    let text = body.collect().await.unwrap().to_bytes();
    let expected: String = (0..50).map(|i| format!("piece {i}\n")).collect();
    assert_eq!(text, expected.as_bytes());
    assert!(encoder.await.unwrap());
}

#[test]
fn a_probe_query_is_read_as_the_server_reads_it() {
    let q = ProbeQuery::parse("target=a%20b&check=pull&debug=1&target=c&x=y");
    assert_eq!(
        q,
        ProbeQuery {
            target: Some("c".into()),
            check: Some("pull".into()),
            debug: true
        }
    );
    assert_eq!(probe_checks(Some("pull")), Ok(Some(vec![CheckKind::Pull])));
    assert_eq!(probe_checks(Some("")), Ok(None));
    assert!(
        probe_checks(Some("nope"))
            .unwrap_err()
            .contains("use one of")
    );
    assert_eq!(ProbeQuery::parse("%ff%fe=&&=="), ProbeQuery::default());
}

#[tokio::test]
async fn a_scrape_mode_scrape_never_joins_a_text_older_than_its_rounds() {
    let runs = Arc::new(AtomicUsize::new(0));
    let encodings = Encodings::new(Duration::from_secs(60));
    let first = encodings.scrape(Format::Classic, None, counting(&runs, 1));
    // Shared while young...
    let joined = encodings.scrape(Format::Classic, None, counting(&runs, 1));
    // ...but not by a scrape whose rounds were recorded after it started.
    let rounds_recorded = std::time::Instant::now();
    let fresh = encodings.scrape(Format::Classic, Some(rounds_recorded), counting(&runs, 1));
    let run0 = &b"run 0 piece 0\n"[..];
    assert_eq!(first.collect().await.unwrap().to_bytes(), run0);
    assert_eq!(joined.collect().await.unwrap().to_bytes(), run0);
    assert_eq!(
        fresh.collect().await.unwrap().to_bytes(),
        &b"run 1 piece 0\n"[..]
    );
}

#[tokio::test]
async fn an_encoder_keeps_at_most_ahead_pieces_beyond_its_reader() {
    // A scraper that does not read yet holds AHEAD pieces and the encoder's thread, not
    // the text; once it reads, the encoder follows it to the end.
    let (mut body, encoder, encoding) = Streamed::spawn_watched(pieces(10_000));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!encoder.is_finished(), "the encoder waits for its reader");
    assert_eq!(
        encoding.held_pieces(),
        AHEAD + 1,
        "AHEAD pieces beyond the first"
    );
    for _ in 0..5_000 {
        body.frame().await.unwrap().unwrap();
    }
    assert!(
        encoding.held_pieces() <= AHEAD + 1,
        "{} pieces held half-way",
        encoding.held_pieces()
    );
    let text = body.collect().await.unwrap().to_bytes();
    assert!(text.ends_with(b"piece 9999\n"));
    let whole = tokio::time::timeout(Duration::from_secs(5), encoder)
        .await
        .expect("the encoder ended with its reader")
        .unwrap();
    assert!(whole);
}

#[tokio::test]
async fn a_waiting_reader_is_woken_for_two_pieces_or_the_end() {
    // The encoder writes a piece when the test says so; the reader waits first.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (mut body, encoder) = Streamed::spawn(move |send| {
        (0..3).all(|i| rx.recv().is_ok() && send(Bytes::from(format!("piece {i}\n"))))
    });
    let wait = Duration::from_millis(300);
    let mut frame = std::pin::pin!(body.frame());
    assert!(
        tokio::time::timeout(wait, frame.as_mut()).await.is_err(),
        "nothing written yet"
    );
    tx.send(()).unwrap();
    assert!(
        tokio::time::timeout(wait, frame.as_mut()).await.is_err(),
        "one piece does not wake a waiting reader"
    );
    tx.send(()).unwrap();
    let first = tokio::time::timeout(wait, frame)
        .await
        .expect("two pieces wake it");
    assert_eq!(first.unwrap().unwrap().into_data().unwrap(), "piece 0\n");
    assert_eq!(
        body.frame().await.unwrap().unwrap().into_data().unwrap(),
        "piece 1\n",
        "the second is there without waiting"
    );
    tx.send(()).unwrap();
    // The third piece is one beyond the reader, and the end wakes it.
    assert_eq!(
        body.frame().await.unwrap().unwrap().into_data().unwrap(),
        "piece 2\n"
    );
    assert!(body.frame().await.is_none(), "then the body ends");
    assert!(encoder.await.unwrap(), "the encoder wrote every piece");
}

#[tokio::test]
async fn an_encoder_waiting_for_a_reader_stops_when_the_reader_goes() {
    let (body, encoder) = Streamed::spawn(pieces(10_000));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!encoder.is_finished(), "the encoder waits for its reader");
    drop(body);
    let whole = tokio::time::timeout(Duration::from_secs(5), encoder)
        .await
        .expect("the encoder went on waiting after its reader went")
        .unwrap();
    assert!(!whole);
}

#[tokio::test]
async fn an_encoder_waiting_for_a_reader_stops_when_its_encoding_is_evicted() {
    let encodings = Encodings::new(Duration::from_millis(1));
    let _stalled = encodings.scrape(Format::Classic, None, pieces(10_000));
    let first = encodings.live.lock().unwrap()[0].upgrade().unwrap();
    let mut others = Vec::new();
    for _ in 0..MAX_ENCODINGS {
        tokio::time::sleep(Duration::from_millis(5)).await;
        others.push(encodings.scrape(Format::Classic, None, pieces(1)));
    }
    assert!(first.evicted.is_cancelled(), "the oldest was evicted");
    first
        .progress
        .subscribe()
        .wait_for(|p| p.end.is_some())
        .await
        .expect("the evicted encoder ended");
    assert_eq!(first.progress.borrow().end, Some(false));
}

#[tokio::test]
async fn a_dropped_body_stops_the_encoder() {
    // The scraper went away after the first piece: the encoder learns it at its next
    // piece and stops instead of writing a text nobody reads.
    let (mut body, encoder) = Streamed::spawn(|send| {
        (0..100_000).all(|i| {
            std::thread::sleep(Duration::from_millis(1));
            send(Bytes::from(format!("piece {i}\n")))
        })
    });
    let first = body.frame().await;
    assert!(first.is_some_and(|f| f.is_ok()));
    drop(body);
    let whole = tokio::time::timeout(Duration::from_secs(5), encoder)
        .await
        .expect("the encoder went on after its body was dropped")
        .unwrap();
    assert!(!whole);
}

#[tokio::test]
async fn concurrent_scrapes_share_one_encoding_and_the_oldest_is_evicted() {
    use std::sync::atomic::AtomicUsize;
    let runs = Arc::new(AtomicUsize::new(0));
    let encodings = Encodings::new(Duration::from_millis(100));
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let gate = Arc::new(Mutex::new(gate));
    let slow = |runs: &Arc<AtomicUsize>, gate: &Arc<Mutex<std::sync::mpsc::Receiver<()>>>| {
        let (runs, gate) = (runs.clone(), gate.clone());
        move |send: &mut dyn FnMut(Bytes) -> bool| {
            runs.fetch_add(1, Ordering::SeqCst);
            send(Bytes::from_static(b"a 1\n"));
            // Held in progress until the test lets it end.
            let _ = gate.lock().unwrap().recv_timeout(Duration::from_secs(5));
            send(Bytes::from_static(b"b 2\n"))
        }
    };
    let first = encodings.scrape(Format::Classic, None, slow(&runs, &gate));
    let second = encodings.scrape(Format::Classic, None, slow(&runs, &gate));
    release.send(()).unwrap();
    let (a, b) = (first.collect().await, second.collect().await);
    assert_eq!(a.unwrap().to_bytes(), &b"a 1\nb 2\n"[..]);
    assert_eq!(b.unwrap().to_bytes(), &b"a 1\nb 2\n"[..]);
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "one encoding for both scrapes"
    );

    // Finished encodings held by scrapers that do not read: the oldest is cut off when
    // a newer one needs its place.
    let whole = |send: &mut dyn FnMut(Bytes) -> bool| send(Bytes::from_static(b"c 3\n"));
    let mut held = Vec::new();
    for _ in 0..MAX_ENCODINGS {
        held.push(encodings.scrape(Format::Classic, None, whole));
        // Past the sharing time: each scrape starts an encoding of its own.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let newest = encodings.scrape(Format::Classic, None, whole);
    assert!(
        held.remove(0).collect().await.is_err(),
        "the oldest is evicted"
    );
    assert!(held.remove(0).collect().await.is_ok());
    assert!(newest.collect().await.is_ok());
}

#[tokio::test]
async fn an_encoder_that_stops_early_cuts_the_body_instead_of_ending_it() {
    // A panic or a stop before the end must not look like a whole text to the scraper.
    let (body, _) = Streamed::spawn(|send| {
        send(Bytes::from_static(b"a_metric 1\n"));
        false
    });
    assert!(body.collect().await.is_err());
    let (body, _) = Streamed::spawn(|send| {
        send(Bytes::from_static(b"a_metric 1\n"));
        panic!("a bug in the encoder")
    });
    assert!(body.collect().await.is_err());
}

#[tokio::test]
async fn a_shared_encoding_frees_the_pieces_every_reader_has_passed() {
    // Two scrapes of 1,000 pieces: the encoder follows the faster one, and only the pieces
    // the slower one has not passed stay held; a late scrape still gets the whole text,
    // from an encoding of its own.
    let encodings = Encodings::new(Duration::from_secs(60));
    let mut fast = encodings.scrape(Format::Classic, None, pieces(1_000));
    let mut slow = encodings.scrape(Format::Classic, None, pieces(1_000));
    let encoding = encodings.live.lock().unwrap()[0].upgrade().unwrap();
    assert_eq!(encodings.live.lock().unwrap().len(), 1, "the second joined");
    for _ in 0..600 {
        fast.frame().await.unwrap().unwrap();
    }
    for _ in 0..200 {
        slow.frame().await.unwrap().unwrap();
    }
    // The encoder settles AHEAD + 1 pieces past the faster reader.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let written = || encoding.progress.borrow().written;
    assert_eq!(
        written(),
        601 + AHEAD,
        "the encoder follows the faster reader"
    );
    assert_eq!(
        encoding.held_pieces(),
        written() - 200,
        "the pieces both have passed are freed"
    );
    drop(slow);
    assert_eq!(
        encoding.held_pieces(),
        written() - 600,
        "a reader gone holds nothing back"
    );

    let late = encodings.scrape(Format::Classic, None, pieces(1_000));
    assert_eq!(
        encodings.live.lock().unwrap().len(),
        2,
        "the late one started its own"
    );
    let expected: String = (0..1_000).map(|i| format!("piece {i}\n")).collect();
    assert_eq!(
        late.collect().await.unwrap().to_bytes(),
        expected.as_bytes()
    );
    let rest = fast.collect().await.unwrap().to_bytes();
    assert!(expected.as_bytes().ends_with(&rest), "the fast one's rest");
    assert_eq!(encoding.held_pieces(), 0);
}

#[tokio::test]
async fn a_flood_of_late_scrapes_costs_a_bounded_number_of_encodings() {
    // Each scrape has passed its first piece when the next arrives: the first
    // FREEING_PER_SHARE start encodings that free, the next keeps every piece, and every
    // later scrape of its sharing time joins it and gets the whole text.
    let runs = Arc::new(AtomicUsize::new(0));
    let encodings = Encodings::new(Duration::from_secs(60));
    let mut scrapes = Vec::new();
    for _ in 0..20 {
        let mut body = encodings.scrape(Format::Classic, None, counting(&runs, 10));
        body.frame().await.unwrap().unwrap();
        scrapes.push(body);
    }
    assert_eq!(runs.load(Ordering::SeqCst), FREEING_PER_SHARE + 1);
    for body in scrapes.drain(FREEING_PER_SHARE + 1..) {
        let rest = body.collect().await.unwrap().to_bytes();
        let expected: String = (1..10)
            .map(|i| format!("run {FREEING_PER_SHARE} piece {i}\n"))
            .collect();
        assert_eq!(
            rest,
            expected.as_bytes(),
            "joined the keeping encoding whole"
        );
    }
}

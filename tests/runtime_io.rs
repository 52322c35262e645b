//! A handler's own sockets: registered on its core's poller through
//! `Context::registry` and heard in `Handler::on_io`, with the mio that
//! corelane re-exports, so that an embedder needs no mio dependency of its
//! own to name these types.

use std::io::{ErrorKind, Read, Write};

use corelane::frame::Message;
use corelane::mio::event::Event;
use corelane::mio::net::UnixStream;
use corelane::mio::{Interest, Token};
use corelane::runtime::{Context, Handler, Runtime};

#[derive(rkyv::Archive, rkyv::Serialize)]
struct Unused;

impl Message for Unused {
    const TYPE_ID: u16 = 1;
    const VERSION: u8 = 1;
    const NAME: &'static str = "Unused";
}

const SOCKET: Token = Token(7);

/// Reads its socket whenever the core says it is readable.
struct Reader {
    socket: UnixStream,
    tokens: Vec<Token>,
    read: Vec<u8>,
}

impl Handler for Reader {
    type Message = Unused;

    fn on_message(&mut self, _: &mut Context<'_, Unused>, _: usize, _: &ArchivedUnused) {}

    fn on_io(&mut self, _: &mut Context<'_, Unused>, event: &Event) {
        self.tokens.push(event.token());
        let mut chunk = [0u8; 64];
        loop {
            match self.socket.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => self.read.extend_from_slice(&chunk[..n]),
                Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                Err(error) => panic!("read failed: {error}"),
            }
        }
    }
}

#[test]
fn a_handler_hears_its_own_socket_through_the_reexported_mio() {
    let (socket, mut peer) = UnixStream::pair().unwrap();
    let mut slot = Some(socket);
    let mut runtime = Runtime::builder()
        .cores(1)
        .build()
        .unwrap()
        .start_manual(|_| Reader {
            socket: slot.take().expect("one core"),
            tokens: Vec::new(),
            read: Vec::new(),
        })
        .unwrap();
    runtime.with_context(0, |reader, cx| {
        cx.registry()
            .register(&mut reader.socket, SOCKET, Interest::READABLE)
            .unwrap();
    });

    peer.write_all(b"hello").unwrap();
    // The bytes are in the socket before the first turn polls; a few turns
    // bound the loop should the readiness come a turn late.
    for _ in 0..1000 {
        runtime.turn();
        if runtime.handler(0).read.len() == 5 {
            break;
        }
    }
    assert_eq!(runtime.handler(0).read, b"hello");
    assert_eq!(runtime.handler(0).tokens[0], SOCKET);
    runtime.shutdown().unwrap();
}

/// Two sockets; panics the first time it hears either.
struct Touchy {
    sockets: Vec<UnixStream>,
    heard: Vec<Token>,
    panicked: bool,
}

impl Handler for Touchy {
    type Message = Unused;

    fn on_message(&mut self, _: &mut Context<'_, Unused>, _: usize, _: &ArchivedUnused) {}

    fn on_io(&mut self, _: &mut Context<'_, Unused>, event: &Event) {
        if !std::mem::replace(&mut self.panicked, true) {
            panic!("the handler fails on its first event");
        }
        self.heard.push(event.token());
    }
}

/// A host that catches a panic in `on_io` still gets the other events of
/// that poll on its next turn. Sockets are polled edge-triggered, so an
/// event dropped is not raised again until more arrives: before, the
/// unwind dropped the rest of the poll's events, and their sockets went
/// unheard for good.
#[test]
fn a_caught_io_panic_keeps_the_other_events_of_its_poll() {
    let (first, mut first_peer) = UnixStream::pair().unwrap();
    let (second, mut second_peer) = UnixStream::pair().unwrap();
    let mut slot = Some(vec![first, second]);
    let mut runtime = Runtime::builder()
        .cores(1)
        .build()
        .unwrap()
        .start_manual(|_| Touchy {
            sockets: slot.take().expect("one core"),
            heard: Vec::new(),
            panicked: false,
        })
        .unwrap();
    runtime.with_context(0, |touchy, cx| {
        for (token, socket) in touchy.sockets.iter_mut().enumerate() {
            cx.registry()
                .register(socket, Token(token), Interest::READABLE)
                .unwrap();
        }
    });
    first_peer.write_all(b"a").unwrap();
    second_peer.write_all(b"b").unwrap();

    // Both are readable before the first poll, so one poll reports both.
    let turned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.turn()));
    assert!(turned.is_err(), "the first event panics");
    // Unwound, the handler is no longer running for the stall detector.
    assert_eq!(runtime.handle().running_handlers(), [None]);
    runtime.turn();
    assert_eq!(
        runtime.handler(0).heard.len(),
        1,
        "the other socket is heard"
    );
    runtime.shutdown().unwrap();
}

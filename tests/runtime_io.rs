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

//! The HTTP/1.1 server of the status endpoint (hyper): thin glue around
//! [`super::status::respond`]. Headers are bounded ([`MAX_HEADER_BYTES`]): a request with
//! more is refused by hyper before it reaches the responder.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use super::status::{Snapshot, respond};

/// Most bytes of request head (line and headers) read before refusing the request.
pub const MAX_HEADER_BYTES: usize = 16 << 10;

/// Serves connections on `listener` until the runtime ends.
pub async fn serve(listener: tokio::net::TcpListener, snap: Arc<Mutex<Snapshot>>, token: String) {
    let token: Arc<str> = token.into();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (snap, token) = (snap.clone(), token.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let s = snap.lock().expect("snapshot lock").clone();
                let auth = req.headers().get(hyper::header::AUTHORIZATION).map(|v| v.as_bytes().to_vec());
                let a = respond(req.method().as_str(), req.uri().path(), auth.as_deref(), &token, &s);
                let mut resp = Response::builder()
                    .status(a.status)
                    .header(hyper::header::CONTENT_TYPE, a.content_type)
                    .header(hyper::header::CACHE_CONTROL, "no-store");
                if let Some(challenge) = a.www_authenticate {
                    resp = resp.header(hyper::header::WWW_AUTHENTICATE, challenge);
                }
                let resp =
                    resp.body(Full::new(Bytes::from(a.body))).expect("a response from fixed parts builds");
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .max_buf_size(MAX_HEADER_BYTES)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

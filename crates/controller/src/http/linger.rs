//! Lingering on refused bodies. A handler that refuses a request early (bad key, body over a
//! limit, unexpected part) leaves the rest of the body unread; closing the connection on
//! unread bytes makes the kernel send a reset, which can destroy the refusal before the
//! client reads it. So the response goes out at once, and what is left of the body is read
//! and thrown away in the background, up to a bound in bytes and time; past it the
//! connection is closed. Nothing is ever kept, so memory does not grow with the body.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, BodyDataStream, Bytes, HttpBody};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use futures_util::{Stream, StreamExt};

/// Most bytes of a refused body read and discarded after the response.
const LINGER_MAX_BYTES: usize = 8 * 1024 * 1024;
/// Longest a refused body is read after the response.
const LINGER_MAX_TIME: Duration = Duration::from_secs(2);

/// A request body shared between the handler and this middleware, so that what the handler
/// left unread can still be discarded after it returns.
#[derive(Clone)]
struct SharedBody(Arc<Mutex<Option<BodyDataStream>>>);

impl SharedBody {
    fn take_rest(&self) -> Option<BodyDataStream> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

impl Stream for SharedBody {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.as_mut() {
            None => Poll::Ready(None),
            Some(stream) => {
                let polled = stream.poll_next_unpin(cx);
                if let Poll::Ready(None) = polled {
                    // Finished: nothing left to discard.
                    *slot = None;
                }
                polled
            }
        }
    }
}

/// Runs the request, then discards (bounded) whatever of its body the handler did not read.
pub async fn discard_unread_body(request: Request, next: Next) -> Response {
    if HttpBody::is_end_stream(request.body()) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let shared = SharedBody(Arc::new(Mutex::new(Some(body.into_data_stream()))));
    let response = next
        .run(Request::from_parts(
            parts,
            Body::from_stream(shared.clone()),
        ))
        .await;
    if let Some(mut rest) = shared.take_rest() {
        tokio::spawn(async move {
            let drained = tokio::time::timeout(LINGER_MAX_TIME, async {
                let mut discarded = 0;
                while let Some(Ok(piece)) = rest.next().await {
                    discarded += piece.len();
                    if discarded > LINGER_MAX_BYTES {
                        break;
                    }
                }
            })
            .await;
            if drained.is_err() {
                tracing::debug!("closing a connection whose refused body kept coming");
            }
        });
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn what_the_handler_reads_is_not_offered_again() {
        let pieces = ["ab", "cd", "ef"].map(|p| Ok::<_, std::io::Error>(Bytes::from(p)));
        let body = Body::from_stream(futures_util::stream::iter(pieces));
        let shared = SharedBody(Arc::new(Mutex::new(Some(body.into_data_stream()))));
        let mut handler_view = shared.clone();
        assert_eq!(handler_view.next().await.unwrap().unwrap(), "ab");
        drop(handler_view);
        let mut rest = shared.take_rest().unwrap();
        assert_eq!(rest.next().await.unwrap().unwrap(), "cd");
        assert_eq!(rest.next().await.unwrap().unwrap(), "ef");
        assert!(rest.next().await.is_none());
    }

    #[tokio::test]
    async fn a_fully_read_body_leaves_nothing_to_discard() {
        let body = Body::from("all of it");
        let shared = SharedBody(Arc::new(Mutex::new(Some(body.into_data_stream()))));
        let mut handler_view = shared.clone();
        while handler_view.next().await.is_some() {}
        assert!(shared.take_rest().is_none());
    }
}

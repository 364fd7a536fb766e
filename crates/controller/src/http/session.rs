//! Session consistency across controllers: every successful response carries this node's
//! frontier as `X-RedCloud-Frontier`; a request that brings a token this node has not reached
//! yet waits (bounded) while the node catches up from its peers, or gets 503 NOT_CAUGHT_UP.
//! A token is only waited for when it names origins this node knows (in its log or as peers):
//! anything else is 400 INVALID_FRONTIER at once, and at most [`CATCH_UP_WAITERS`] requests
//! wait at a time, so forged tokens cannot hold requests or memory. Retired controllers are
//! left out of tokens both ways, so a token's size follows the live controllers.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use redcloud_eventlog::VersionVector;

use super::AppState;
use crate::error::ApiError;

/// The header carrying a frontier token.
pub const FRONTIER_HEADER: &str = "x-redcloud-frontier";
/// Requests that may wait for this node to catch up at once; more get 503 NOT_CAUGHT_UP.
pub const CATCH_UP_WAITERS: usize = 1024;
/// Longest token read: a frontier of a few hundred origins.
const TOKEN_MAX_BYTES: usize = 16 * 1024;

/// A frontier as an opaque, header-safe token: hex of its MessagePack encoding.
pub fn encode_token(frontier: &VersionVector) -> String {
    hex::encode(rmp_serde::to_vec(frontier).expect("a version vector always encodes"))
}

/// Reads a token; `None` when it is not one this server wrote.
pub fn decode_token(token: &str) -> Option<VersionVector> {
    if token.len() > TOKEN_MAX_BYTES {
        return None;
    }
    rmp_serde::from_slice(&hex::decode(token.trim()).ok()?).ok()
}

/// Waits for the node to reach the request's token, then stamps the response with the node's
/// frontier.
pub async fn read_your_writes(
    State(app): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let wanted = match request
        .headers()
        .get(FRONTIER_HEADER)
        .map(|v| v.to_str().ok().and_then(decode_token))
    {
        None => None,
        Some(Some(frontier)) => Some(frontier),
        Some(None) => {
            return ApiError::InvalidRequest(format!(
                "{FRONTIER_HEADER} is not a frontier token from this service"
            ))
            .into_response();
        }
    };
    // Nobody waits for a retired controller: what it made arrives when it arrives.
    let wanted = wanted.map(|w| app.retired.without_retired(&w));
    let mut watch = app.service.log.frontier();
    if let Some(wanted) = wanted.filter(|w| !watch.borrow().dominates(w)) {
        let peers = app.membership.ids();
        let unknown_origins = wanted
            .iter()
            .filter(|(origin, _)| {
                watch.borrow().get(*origin) == redcloud_eventlog::Seq::ZERO
                    && !peers.contains(origin)
                    && *origin != app.node_id
            })
            .count();
        if unknown_origins > 0 {
            return ApiError::InvalidFrontier { unknown_origins }.into_response();
        }
        let Ok(_waiting) = app.catch_up_waiters.try_acquire() else {
            return ApiError::NotCaughtUp.into_response();
        };
        app.service.log.sync_now();
        let caught_up = tokio::time::timeout(
            app.catch_up_timeout,
            watch.wait_for(|have| have.dominates(&wanted)),
        )
        .await;
        if !matches!(caught_up, Ok(Ok(_))) {
            return ApiError::NotCaughtUp.into_response();
        }
    }
    let mut response = next.run(request).await;
    if response.status().is_success() {
        let frontier = app
            .retired
            .without_retired(&app.service.log.frontier().borrow());
        let token = encode_token(&frontier);
        if let Ok(value) = HeaderValue::from_str(&token) {
            response.headers_mut().insert(FRONTIER_HEADER, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use redcloud_eventlog::{NodeId, Seq};

    #[test]
    fn tokens_round_trip_and_foreign_ones_are_refused() {
        let frontier: VersionVector = [(NodeId::new(7), Seq::new(42))].into_iter().collect();
        assert_eq!(decode_token(&encode_token(&frontier)), Some(frontier));
        assert_eq!(decode_token("zz"), None);
        assert_eq!(decode_token("c0ffee"), None);
    }
}

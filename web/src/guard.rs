//! Middleware that keeps one bad request from hurting anything else: a panic in a handler is
//! caught, logged and answered with a 500 in the error shape, and the worker carries on.

use std::panic::AssertUnwindSafe;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};

use actix_web::middleware::Next;
use futures_util::FutureExt;

use crate::error::ApiError;

pub async fn catch_panics(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // Only the path is kept: holding a clone of the request across the call would stop
    // actix from reusing it.
    let path = req.path().to_string();
    match AssertUnwindSafe(next.call(req)).catch_unwind().await {
        Ok(res) => res,
        Err(panic) => {
            let reason = loop_gateway_actors::supervise::panic_message(&panic);
            tracing::error!(%path, %reason, "request handler panicked");
            // An error returned from middleware becomes its ResponseError's response.
            Err(ApiError::internal(
                "the gateway hit an internal error handling this request; it has been logged",
            )
            .into())
        }
    }
}

//! The dashboard's static files, embedded into the binary from `ui/` at build time.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "../ui"]
struct Ui;

/// The embedded file at the request's path (`/` is `index.html`), if there is one.
pub fn serve(req: &HttpRequest) -> Option<HttpResponse> {
    let path = req.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    let file = Ui::get(path)?;
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let cache = if path == "index.html" {
        "no-cache"
    } else {
        "public, max-age=3600"
    };
    Some(
        HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, mime.as_ref()))
            .insert_header((header::CACHE_CONTROL, cache))
            .insert_header(("x-content-type-options", "nosniff"))
            .body(file.data.into_owned()),
    )
}

//! The `/api` routes, one module per resource, and what they share: pagination, the route
//! table that turns a wrong method into 405 instead of 404, and the OpenAPI document.

use actix_web::http::Method;
use serde::Deserialize;

use crate::error::ApiError;
use loop_gateway_actors::store::Page;

pub mod approvals;
pub mod auth;
pub mod channels;
pub mod groups;
pub mod health;
pub mod runs;
pub mod tasks;
pub mod tools;
pub mod usage;
pub mod webhooks;

/// For update bodies: tell an absent field (keep it) from `null` (clear it).
pub fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Some(Option::deserialize(d)?))
}

/// `?limit=&offset=`, shared by every list endpoint.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1 to 200, default 50.
    pub limit: Option<i64>,
    /// Default 0.
    pub offset: Option<i64>,
}

pub const MAX_PAGE: i64 = 200;

impl PageQuery {
    pub fn page(&self) -> Result<Page, ApiError> {
        let limit = self.limit.unwrap_or(50);
        let offset = self.offset.unwrap_or(0);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ApiError::validation(format!(
                "limit must be between 1 and {MAX_PAGE}"
            )));
        }
        if offset < 0 {
            return Err(ApiError::validation("offset must not be negative"));
        }
        Ok(Page { limit, offset })
    }
}

/// Every documented route (from the OpenAPI document, so it cannot drift from the routes) as
/// path templates with their methods.
pub struct RouteTable {
    routes: Vec<(Vec<String>, Vec<Method>)>,
}

impl RouteTable {
    pub fn from_openapi(api: &utoipa::openapi::OpenApi) -> Self {
        let routes = api
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let segments = path.split('/').map(str::to_string).collect();
                let mut methods = Vec::new();
                for (m, op) in [
                    (Method::GET, &item.get),
                    (Method::POST, &item.post),
                    (Method::PUT, &item.put),
                    (Method::DELETE, &item.delete),
                    (Method::PATCH, &item.patch),
                ] {
                    if op.is_some() {
                        methods.push(m);
                    }
                }
                (segments, methods)
            })
            .collect();
        Self { routes }
    }

    /// The methods a path allows, when some route has that path.
    pub fn allowed(&self, path: &str) -> Option<Vec<Method>> {
        let segs: Vec<&str> = path.split('/').collect();
        let mut found: Option<Vec<Method>> = None;
        for (template, methods) in &self.routes {
            let matches = template.len() == segs.len()
                && template
                    .iter()
                    .zip(&segs)
                    .all(|(t, s)| (t.starts_with('{') && !s.is_empty()) || t == s);
            if matches {
                found
                    .get_or_insert_with(Vec::new)
                    .extend(methods.iter().cloned());
            }
        }
        found
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Loop Gateway API",
        description = "Self-hosted agent gateway. Every /api route needs `Authorization: Bearer <session token>` unless marked open."
    ),
    components(schemas(crate::error::ErrorBody)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

//! `Skills`: the tool registry. It owns the set of tools agents may call (built-ins now;
//! sandboxed custom skills join later) and hands runs an immutable snapshot (`Arc<ToolBox>`),
//! so a run never waits on the registry while it works.

use std::sync::Arc;

use actix::prelude::*;
use agent_runner::ToolBox;
use serde::Serialize;

pub mod http_request;

pub use http_request::{HttpRequestConfig, SsrfGuard};

/// A registered tool as `/api/tools` lists it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolInfo {
    pub name: String,
    pub description: String,
    pub input_schema: serde_json::Value,
    pub risk_level: &'static str,
    pub builtin: bool,
}

/// Every registered tool.
#[derive(Message)]
#[rtype(result = "Vec<ToolInfo>")]
pub struct ListTools;

/// The current snapshot of the registry, for a run.
#[derive(Message)]
#[rtype(result = "Arc<ToolBox>")]
pub struct GetToolBox;

pub struct Skills {
    toolbox: Arc<ToolBox>,
}

impl Skills {
    pub fn new(toolbox: Arc<ToolBox>) -> Self {
        Self { toolbox }
    }
}

/// The built-in tools.
pub fn builtin_toolbox(http: HttpRequestConfig) -> Result<ToolBox, String> {
    Ok(ToolBox::new(vec![Arc::new(http_request::tool(http)?)]))
}

impl Actor for Skills {
    type Context = Context<Self>;
}

impl actix::Supervised for Skills {}

impl Handler<ListTools> for Skills {
    type Result = MessageResult<ListTools>;

    fn handle(&mut self, _: ListTools, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.toolbox
                .tools()
                .iter()
                .map(|t| ToolInfo {
                    name: t.spec.name.clone(),
                    description: t.spec.description.clone(),
                    input_schema: t.spec.input_schema.clone(),
                    risk_level: t.risk.as_str(),
                    builtin: true,
                })
                .collect(),
        )
    }
}

impl Handler<GetToolBox> for Skills {
    type Result = MessageResult<GetToolBox>;

    fn handle(&mut self, _: GetToolBox, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.toolbox.clone())
    }
}

//! The agent loop engine: LLM clients and the tool loop, shared by direct mode (inside the
//! gateway's `AgentRun` actor) and container mode (the `agent-runner` binary). It depends on
//! neither actix nor the rest of the gateway, so it can run alone inside a container.

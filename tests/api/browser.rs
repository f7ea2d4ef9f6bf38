//! The dashboard in a real browser: tests/browser/dashboard.mjs drives Debian's Chromium
//! (playwright-core) through setup, webhooks, a live run, an approval click, a loop task and
//! logout, against the real gateway and the Messages API stand-in started here. Screenshots
//! of every tab land in tests/artifacts/.

use std::process::Command;

use std::time::Duration;

use loop_gateway_stand_ins::telegram::{ChatSpec, TelegramBotApi, UserSpec};
use loop_gateway_stand_ins::{HttpTarget, MessagesApi, Reply};
use serde_json::json;

use crate::common::TestServer;

#[actix_rt::test]
async fn the_dashboard_works_in_a_real_browser() {
    let root = env!("CARGO_MANIFEST_DIR");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: tests/run.sh installs Debian's chromium"
    );
    assert!(
        std::path::Path::new(root)
            .join("tests/browser/node_modules/playwright-core")
            .exists(),
        "run `npm ci --prefix tests/browser` (tests/run.sh does)"
    );
    let llm = MessagesApi::start();
    let target = HttpTarget::start();
    // The model's side of the whole walk, in order.
    llm.push(Reply::Text("hello back".into()));
    llm.push(Reply::tool(
        "http_request",
        json!({"url": format!("{}/json", target.url)}),
    ));
    llm.push(Reply::Text("fetched it".into()));
    llm.push(Reply::Text("step one".into()));
    llm.push(Reply::Text("step two TASK_COMPLETE".into()));
    let s = TestServer::with_llm(&llm.url, &[("HTTP_REQUEST_ALLOW", "127.0.0.1")]);

    let tg_token = "424242:browser-test-token";
    let tg = TelegramBotApi::start(tg_token);

    let base = s.base.clone();
    let tg_url = tg.url.clone();
    let walk = actix_rt::task::spawn_blocking(move || {
        Command::new("node")
            .arg(format!("{root}/tests/browser/dashboard.mjs"))
            .env("BASE_URL", base)
            .env("CHROMIUM", chromium)
            .env("ARTIFACTS", format!("{root}/tests/artifacts"))
            .env("TG_URL", tg_url)
            .env("TG_TOKEN", tg_token)
            .output()
            .expect("run node")
    });
    // Once the channel made in the browser polls, someone writes to the bot.
    tg.wait_until_polling(Duration::from_secs(120)).await;
    tg.push_message(
        ChatSpec::Private,
        UserSpec::new(5001, "Dana"),
        "hello from telegram",
    );
    let out = walk.await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser walk failed\n{stdout}\n{stderr}\ngateway log:\n{}",
        s.logs()
    );
    assert!(stdout.contains("step: logout"), "{stdout}");
    assert_eq!(
        target.requests().len(),
        1,
        "the approved call was made once"
    );
}

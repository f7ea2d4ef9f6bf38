// The dashboard in a real browser (Debian's Chromium, driven by playwright-core): setup →
// a webhook made in the UI → a run invoked over HTTP appears live → a run waiting for
// approval is approved with a click → a loop task created from the form shows its iterations
// live → logout. Screenshots of each tab go to $ARTIFACTS. Exits non-zero on any failure.
// Run by tests/api/browser.rs, which starts the gateway and the Messages API stand-in.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const base = process.env.BASE_URL;
const artifacts = process.env.ARTIFACTS || "tests/artifacts";
mkdirSync(artifacts, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
const errors = [];
page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
page.on("pageerror", (e) => errors.push(e.message));
page.on("response", (r) => { if (r.status() >= 400) errors.push(`${r.status()} ${r.request().method()} ${r.url()}`); });
const step = (name) => console.log(`step: ${name}`);
const shot = (name) => page.screenshot({ path: `${artifacts}/${name}.png` });
const timeout = 10_000;

try {
  step("setup");
  await page.goto(base + "/");
  await page.fill("#setup-form input[name=username]", "admin");
  await page.fill("#setup-form input[name=password]", "correct horse battery");
  await page.click("#setup-form button[type=submit]");
  await page.waitForSelector("#shell:not([hidden])", { timeout });
  await page.waitForSelector("text=● live", { timeout });
  await shot("overview");

  step("logout and log in");
  await page.click("#logout");
  await page.waitForSelector("#login:not([hidden])", { timeout });
  await page.fill("#login-form input[name=username]", "admin");
  await page.fill("#login-form input[name=password]", "correct horse battery");
  await page.click("#login-form button[type=submit]");
  await page.waitForSelector("#shell:not([hidden])", { timeout });

  step("create a webhook in the UI");
  await page.goto(base + "/#/webhooks");
  await page.click("text=+ New webhook");
  await page.fill("form input[name=name]", "browser flow");
  await page.click("text=Create webhook");
  const invokeUrl = await page.locator("code", { hasText: "/webhook/invoke/" }).first().textContent({ timeout });
  await shot("webhooks");

  step("a run invoked over HTTP appears live in the feed and the runs tab");
  await page.goto(base + "/#/overview");
  await page.waitForSelector("text=● live", { timeout });
  const first = await (await fetch(invokeUrl, { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ message: "hello from the browser test", sync: true }) })).json();
  if (!first.runId) throw new Error("invoke failed: " + JSON.stringify(first));
  await page.waitForSelector("text=agent:run:complete", { timeout });
  await page.goto(base + "/#/runs");
  await page.waitForSelector(`text=${first.runId.slice(0, 8)}`, { timeout });
  await shot("runs");

  step("a run waiting for approval is approved with a click");
  const rule = await page.evaluate(async () => (await fetch("/api/approval-rules", {
    method: "POST", credentials: "same-origin",
    headers: { "content-type": "application/json", "x-requested-with": "loop-gateway" },
    body: JSON.stringify({ toolName: "http_request", riskLevel: "high", requireApproval: true }),
  })).status);
  if (rule !== 200) throw new Error("rule not saved: " + rule);
  await page.goto(base + "/#/approvals");
  await page.waitForSelector("text=● live", { timeout });
  const second = await (await fetch(invokeUrl, { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ message: "fetch something" }) })).json();
  await page.locator("button", { hasText: "Approve" }).first().waitFor({ timeout });
  await shot("approvals");
  await page.locator("button", { hasText: "Approve" }).first().click();
  await page.goto(base + `/#/runs/${second.runId}`);
  await page.waitForSelector("text=complete", { timeout });

  step("a loop task created from the form shows its iterations live");
  await page.goto(base + "/#/tasks");
  await page.click("text=+ New Task");
  await page.fill("input[name=name]", "browser-task");
  await page.fill("textarea[name=prompt]", "Write two steps.");
  await page.click("text=Create and start");
  // Creating opens the task's page, which follows its iterations live.
  await page.locator("pre", { hasText: "## Iteration 2" }).waitFor({ timeout });
  await page.locator(".badge", { hasText: "complete" }).first().waitFor({ timeout });
  await shot("task");

  step("a Telegram channel created in the UI connects, and a message shows up live");
  await page.goto(base + "/#/channels");
  await page.click("text=+ New channel");
  await page.fill("input[name=name]", "browser-bot");
  await page.fill("input[name=botToken]", process.env.TG_TOKEN);
  await page.fill("input[name=apiBaseUrl]", process.env.TG_URL);
  await page.fill("input[name=pollTimeoutSeconds]", "1");
  await page.click("text=Create channel");
  await page.locator(".badge.status", { hasText: "connected" }).waitFor({ timeout });
  await page.click("button:has-text('Messages')");
  // The test pushes a Telegram message once the bot polls; it arrives and is answered live.
  await page.locator("td", { hasText: "hello from telegram" }).first().waitFor({ timeout: 30_000 });
  await page.locator(".badge", { hasText: "answered" }).first().waitFor({ timeout });
  await shot("channels");

  step("an agent group created in the UI gets the channel bound from its card");
  await page.goto(base + "/#/groups");
  await page.click("text=+ New group");
  await page.fill("input[name=name]", "support");
  await page.click("text=Create group");
  const bind = page.locator("select[name=bind]");
  await bind.waitFor({ timeout });
  await bind.selectOption({ label: "browser-bot (telegram)" });
  await page.locator(".badge", { hasText: "browser-bot" }).waitFor({ timeout });

  for (const tab of ["usage", "groups", "tools", "channels"]) {
    await page.goto(base + `/#/${tab}`);
    await page.waitForTimeout(300);
    await shot(tab);
  }
  await page.setViewportSize({ width: 375, height: 800 });
  await page.goto(base + "/#/overview");
  await page.waitForTimeout(300);
  await shot("phone");

  step("logout");
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.click("#logout");
  await page.waitForSelector("#login:not([hidden])", { timeout });
  if (errors.length) throw new Error("browser console errors: " + JSON.stringify(errors));
  console.log("1 passed, 0 failed");
} catch (e) {
  await shot("failure").catch(() => {});
  console.error("browser test failed:", e.message);
  process.exitCode = 1;
} finally {
  await browser.close();
}

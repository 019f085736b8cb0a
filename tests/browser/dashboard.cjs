// One operator's session in the dashboard, in headless Chromium driven by Playwright over
// the DevTools protocol. tests/api/browser.rs starts chatbridge with the seed conversation's
// delivery dead and its target recovered among other delivered chats, runs this, then checks
// the store and the target. Besides the operator's work, it tries what a browser lets an
// attacker try: reading the session cookie from a script, a form on another site posting to
// the API, a cookie kept after logout, a login leading off-site, guessing the token.
//
// Environment: CHATBRIDGE_URL, CHATBRIDGE_ADMIN_TOKEN, CHATBRIDGE_DEAD_DELIVERY (its id),
// CHATBRIDGE_CONVERSATIONS (how many the store holds), CHATBRIDGE_SCREENSHOTS (a folder),
// CHATBRIDGE_CHROMIUM (default /usr/bin/chromium); NODE_PATH must reach playwright-core.
"use strict";
const path = require("node:path");
const { chromium } = require("playwright-core");

const base = process.env.CHATBRIDGE_URL;
const token = process.env.CHATBRIDGE_ADMIN_TOKEN;
const deadId = process.env.CHATBRIDGE_DEAD_DELIVERY;
const conversations = Number(process.env.CHATBRIDGE_CONVERSATIONS);
const shots = process.env.CHATBRIDGE_SCREENSHOTS;
const seed = "smartsupp:208:55039";
// How long any one expected page state may take to appear.
const patience = 20_000;

function check(condition, what) {
  if (!condition) throw new Error(`expected: ${what}`);
  console.log(`ok: ${what}`);
}

async function shoot(page, name) {
  const file = path.join(shots, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot: ${file}`);
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHATBRIDGE_CHROMIUM || "/usr/bin/chromium",
    // The machine has no network beyond loopback: keep Chromium from calling out.
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.setDefaultTimeout(patience);
    const problems = [];
    page.on("pageerror", (e) => problems.push(`script error: ${e.message}`));

    // Log in: any page leads to the form; a wrong token is refused, the right one opens.
    const first = await page.goto(`${base}/conversations`);
    check(page.url().startsWith(`${base}/login`), "an anonymous visit lands on the login form");
    const headers = first.headers();
    check(
      /script-src 'self'/.test(headers["content-security-policy"]) &&
        /frame-ancestors 'none'/.test(headers["content-security-policy"]) &&
        headers["x-frame-options"] === "DENY" &&
        headers["x-content-type-options"] === "nosniff" &&
        headers["referrer-policy"] === "no-referrer",
      "pages carry the security headers",
    );
    await page.fill("#token", "wrong");
    await page.click("button[type=submit]");
    await page.getByRole("alert").filter({ hasText: "not the admin token" }).waitFor();
    check(true, "a wrong token is refused");
    await page.fill("#token", token);
    await shoot(page, "1-login");
    await page.click("button[type=submit]");
    await page.waitForURL(`${base}/conversations`);
    check(true, "the right token opens the page asked for");
    const session = (await page.context().cookies()).find((c) => c.name === "chatbridge_session");
    check(
      session && session.httpOnly && session.sameSite === "Strict" &&
        session.value.length >= 43 && !session.value.includes(token),
      "the session cookie is a random id, HttpOnly and SameSite=Strict",
    );
    check(
      !(await page.evaluate(() => document.cookie)).includes("chatbridge_session"),
      "no script on the page can read the session cookie",
    );

    // Every conversation, page by page.
    const listed = new Set();
    let pages = 0;
    for (;;) {
      pages += 1;
      for (const href of await page.$$eval('a[href^="/conversations/smartsupp"]', (links) =>
        links.map((a) => a.getAttribute("href")),
      )) {
        listed.add(href);
      }
      const next = await page.$("#next");
      if (!next) break;
      await Promise.all([page.waitForNavigation(), next.click()]);
    }
    check(
      listed.size === conversations && pages === Math.ceil(conversations / 50),
      `the list pages through all ${conversations} conversations (${listed.size} in ${pages} pages)`,
    );
    await page.click("nav >> text=Overview");
    await page.waitForURL(`${base}/`);
    check(
      (await page.textContent("#received")).trim() === String(conversations),
      `overview: ${conversations} received`,
    );
    check((await page.textContent("#dead")).trim() === "1", "overview: 1 dead");
    await shoot(page, "2-overview");

    // Find the seed by its visitor's e-mail and open it.
    await page.click("nav >> text=Conversations");
    await page.fill("input[name=email]", "dusan@domain.com");
    await page.click("button:has-text('Search')");
    await page.waitForURL(/email=dusan/);
    await page.click(`a:has-text("${seed}")`);
    await page.waitForURL(`${base}/conversations/${encodeURIComponent(seed)}`);
    const transcript = await page.textContent(".transcript");
    check(transcript.includes("Hi, how can i help you ?"), "the transcript is shown");
    check(
      (await page.getAttribute(`#delivery-${deadId}`, "data-state")) === "dead",
      "its delivery is dead, with the target's answer",
    );
    await shoot(page, "3-conversation-dead");

    // Retry it from the dead letters.
    await page.click("nav >> text=Dead letters");
    await page.waitForURL(`${base}/dead`);
    await shoot(page, "4-dead-letters");
    await page.click(`#dead-${deadId} button.retry`);
    await page.waitForURL(/retried_delivery=/);
    await page.getByRole("status").filter({ hasText: `delivery ${deadId} queued again` }).waitFor();
    check(true, "the retry button queues it again");

    // The worker delivers it; the conversation page shows so once reloaded.
    const deadline = Date.now() + patience;
    let state;
    for (;;) {
      await page.goto(`${base}/conversations/${encodeURIComponent(seed)}`);
      state = await page.getAttribute(`#delivery-${deadId}`, "data-state");
      if (state === "delivered" || Date.now() > deadline) break;
      await page.waitForTimeout(200);
    }
    check(state === "delivered", "after the retry the delivery is delivered");
    await shoot(page, "5-conversation-delivered");

    // The playground: pick a sample (the page loads it), edit the template, render again.
    await page.click("nav >> text=Template playground");
    await page.waitForURL(`${base}/playground`);
    await Promise.all([page.waitForNavigation(), page.selectOption("#sample", "missed-chat")]);
    check(
      (await page.inputValue("#sample")) === "missed-chat" &&
        (await page.inputValue("#payload")).includes('"isMissed": true'),
      "picking a sample loads it",
    );
    const template = page.locator('textarea[data-template="zendesk/ticket.json.tera"]');
    const original = await template.inputValue();
    const edited = original.replace('"subject": "', '"subject": "PLAYGROUND EDIT ');
    check(edited !== original, "the ticket template has a subject to edit");
    await template.fill(edited);
    await Promise.all([page.waitForNavigation(), page.click("#render")]);
    const body = await page.textContent("#requests");
    check(body.includes("PLAYGROUND EDIT"), "the edited template is rendered");
    check(!body.includes(token), "no secret on the page");
    await shoot(page, "6-playground");

    // A page of another site (here a blank one) with a form posting to the API: the browser
    // sends no session cookie with it, and the API would refuse it cross-site anyway.
    await page.goto("about:blank");
    await page.setContent(
      `<form method="post" action="${base}/api/deliveries/retry-dead"><button>go</button></form>`,
    );
    const [forged] = await Promise.all([page.waitForNavigation(), page.click("button")]);
    check(
      forged.status() === 401 || forged.status() === 403,
      `a form on another site cannot use the session (${forged.status()})`,
    );

    // Log out; the cookie, kept and sent again from another browser, opens nothing.
    await page.goto(`${base}/`);
    await Promise.all([page.waitForNavigation(), page.click("button:has-text('Log out')")]);
    check(page.url().startsWith(`${base}/login`), "logging out leads to the login form");
    const thief = await browser.newContext();
    await thief.addCookies([{ ...session }]);
    const stolen = await thief.newPage();
    await stolen.goto(`${base}/conversations`);
    check(stolen.url().startsWith(`${base}/login`), "a session ended by logout stays ended");
    await thief.close();

    // A login whose `next` a browser would read as another host stays on this one.
    await page.goto(`${base}/login?next=${encodeURIComponent("/\t/evil.example")}`);
    await page.fill("#token", token);
    await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
    check(page.url() === `${base}/`, `a hostile next leads home (${page.url()})`);

    // Guessing: after ten wrong tokens from this address even the right one is refused.
    const guesser = await browser.newPage();
    await guesser.goto(`${base}/login`);
    for (let i = 0; i < 10; i += 1) {
      await guesser.fill("#token", `guess-${i}`);
      await Promise.all([guesser.waitForNavigation(), guesser.click("button[type=submit]")]);
    }
    await guesser.fill("#token", token);
    const [refused] = await Promise.all([
      guesser.waitForNavigation(),
      guesser.click("button[type=submit]"),
    ]);
    check(
      refused.status() === 429 &&
        (await guesser.getByRole("alert").textContent()).includes("Too many wrong tokens"),
      "after ten wrong tokens the form refuses for a while",
    );
    await shoot(guesser, "7-login-throttled");

    check(problems.length === 0, `no script errors (${problems.join("; ")})`);
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

// Drives the Weft GUI in Debian's Chromium with playwright-core, checks
// each page with axe-core, saves screenshots. Run by gui_test.go, which
// passes the scenario as JSON in WEFT_GUI_SCENARIO and answers the
// "WAIT offline" line on stdin once a dataplane has gone offline. The last
// stdout line is "RESULT <json>".
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import path from 'node:path';

const require = createRequire(process.env.WEFT_GUI_NODE_MODULES + '/');
const { chromium } = require('playwright-core');
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const sc = JSON.parse(process.env.WEFT_GUI_SCENARIO);
const result = { checks: [], axe: {}, firstPaintMs: null };
const stdin = createInterface({ input: process.stdin });
const lines = stdin[Symbol.asyncIterator]();

function check(name, ok, detail) {
  result.checks.push({ name, ok: !!ok, detail: detail === undefined ? '' : String(detail) });
  if (!ok) throw new Error(`${name}: ${detail}`);
}

async function axe(page, name) {
  // Evaluated through the DevTools protocol: the GUI's CSP (script-src
  // 'self') stays in force for the page itself.
  if (!(await page.evaluate(() => !!window.axe))) await page.evaluate(axeSource);
  const r = await page.evaluate(async () => window.axe.run(document, { resultTypes: ['violations'] }));
  const v = r.violations.map((x) => ({ id: x.id, impact: x.impact, nodes: x.nodes.length, help: x.help }));
  result.axe[name] = v;
  const critical = v.filter((x) => x.impact === 'critical');
  check(`axe ${name}: no critical violations`, critical.length === 0, JSON.stringify(critical));
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(sc.outDir, name + '.png'), fullPage: true });
}

const browser = await chromium.launch({
  executablePath: sc.chromium,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  page.setDefaultTimeout(sc.timeoutMs);

  if (sc.mode === 'firstpaint') {
    // First paint and first full page (the mesh's dataplanes unless the
    // scenario names another route and what to wait for), signed in, on a
    // cold tab.
    const route = sc.route || `#/meshes/${sc.mesh}/dataplanes`;
    const ready = sc.waitFor || '#dp-count';
    await page.goto(`${sc.url}/gui/?token=${encodeURIComponent(sc.token)}${route}`);
    await page.locator(ready).first().waitFor();
    const t = await page.evaluate(() => {
      const fcp = performance.getEntriesByName('first-contentful-paint')[0];
      const res = performance.getEntriesByType('resource').map((r) => `${r.name.replace(location.origin, '')} start ${r.startTime.toFixed(0)} took ${r.duration.toFixed(0)} ms`);
      const content = performance.getEntriesByName('weft:first-content')[0];
      return { fcp: fcp ? fcp.startTime : null, table: content ? content.startTime : null, res };
    });
    result.firstPaintMs = t.fcp;
    result.dataplanePageMs = t.table;
    result.resources = t.res;
    result.countText = ready === '#dp-count' ? await page.locator('#dp-count').innerText() : '';
    await shot(page, 'firstpaint-10k-' + (sc.shot || 'dataplanes'));
  } else {
    // 1. A wrong token in the sign-in link: a clear error, and the token
    // is gone from the address bar.
    await page.goto(`${sc.url}/gui/?token=not-a-valid-token`);
    const err = page.locator('#signin-error');
    await err.waitFor();
    check('wrong token: sign-in error shown', /Sign-in failed/.test(await err.innerText()), await err.innerText());
    check('wrong token: removed from the address bar', !page.url().includes('token='), page.url());
    await axe(page, 'signin');
    await shot(page, '01-signin-error');

    // 2. The right token: overview with the right counts.
    await page.goto(`${sc.url}/gui/?token=${encodeURIComponent(sc.token)}`);
    await page.locator('.cards').waitFor();
    check('token removed from the address bar', !page.url().includes('token='), page.url());
    check('token kept in session storage', await page.evaluate(() => sessionStorage.getItem('weft.token')) === sc.token, 'missing');
    const cards = async () => page.locator('.card').allInnerTexts();
    const want = sc.overview;
    await page.waitForFunction((w) => {
      const t = [...document.querySelectorAll('.card')].map((c) => c.innerText.replace(/\s+/g, ' ').trim());
      return w.every((x) => t.includes(x));
    }, want, { timeout: sc.timeoutMs }).catch(() => {});
    const got = (await cards()).map((c) => c.replace(/\s+/g, ' ').trim());
    check('overview counts', want.every((x) => got.includes(x)), `want ${JSON.stringify(want)} got ${JSON.stringify(got)}`);
    await axe(page, 'overview');
    await shot(page, '02-overview');

    // 3. Zones: the zone is online.
    await page.click('nav[aria-label="Main"] >> text=Zones');
    const zoneRow = page.locator('tr', { hasText: sc.zone });
    await zoneRow.waitFor();
    check('zone online', /online/.test(await zoneRow.innerText()), await zoneRow.innerText());
    await axe(page, 'zones');
    await shot(page, '03-zones');
    await page.click(`text=${sc.zone}`);
    await page.locator('#zone-status').waitFor();
    check('zone page: online', /online/.test(await page.locator('#zone-status').innerText()), await page.locator('#zone-status').innerText());
    await axe(page, 'zone');

    // 4. Click through: overview → mesh → dataplanes → the dataplane.
    await page.click('nav[aria-label="Main"] >> text=Overview');
    await page.click(`table >> text=${sc.mesh}`);
    await page.locator('table caption', { hasText: 'Services' }).waitFor();
    await axe(page, 'mesh-services');
    await shot(page, '04-mesh-services');
    await page.click('.tabs >> text=Policies');
    await page.locator(`text=${sc.policy}`).first().waitFor();
    await axe(page, 'mesh-policies');
    await shot(page, '05-mesh-policies');
    await page.click('.tabs >> text=Dataplanes');
    await page.locator('#dp-count').waitFor();
    await axe(page, 'mesh-dataplanes');
    await shot(page, '06-mesh-dataplanes');
    // The server-side filter.
    await page.fill('#name', sc.dataplaneFilter);
    await page.click('form.filters button');
    await page.waitForFunction((n) => /^1 of /.test(document.getElementById('dp-count')?.innerText || '') && document.body.innerText.includes(n), sc.dataplane);
    await page.click(`table >> text=${sc.dataplane}`);
    await page.locator('#dp-status').waitFor();
    const tags = await page.locator('#dp-tags').innerText();
    check('dataplane tags', sc.tags.every((t) => tags.includes(t)), tags);
    await page.waitForFunction(() => /online/.test(document.getElementById('dp-status')?.innerText || ''));
    check('dataplane online', /online/.test(await page.locator('#dp-status').innerText()), await page.locator('#dp-status').innerText());
    // Global runs no xds-server: the config dump section says why it is
    // not available instead of failing the page.
    await page.locator('#dp-xds').waitFor();
    const xds = await page.locator('#dp-xds').innerText();
    check('config dump section', /not available: .*xds-server/.test(xds), xds);
    await axe(page, 'dataplane');
    await shot(page, '07-dataplane-online');

    // 5. The dataplane goes offline: shown within 10 s, without a reload.
    await page.evaluate(() => { window.__noReload = true; });
    console.log('WAIT offline');
    const answer = await lines.next();
    check('test harness took the dataplane offline', answer.value === 'offline', answer.value);
    const t0 = Date.now();
    await page.waitForFunction(() => /offline/.test(document.getElementById('dp-status')?.innerText || ''), null, { timeout: 10000 });
    result.offlineShownMs = Date.now() - t0;
    check('no reload', await page.evaluate(() => window.__noReload === true), 'the page was reloaded');
    await shot(page, '08-dataplane-offline');
  }
  result.ok = true;
} catch (e) {
  result.ok = false;
  result.error = String(e && e.stack || e);
} finally {
  await browser.close();
  stdin.close();
}
console.log('RESULT ' + JSON.stringify(result));

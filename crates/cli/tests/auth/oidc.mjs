// Sign-in with an OpenID Connect provider: the unmodified supabase-js
// client (flowType 'pkce', signInWithOAuth with skipBrowserRedirect, then
// exchangeCodeForSession) against wok, with oauth2-mock-server on loopback
// as the provider. The browser's part is fetch with redirect: 'manual'.
// The mock is permissive, so each forged ID token (audience, nonce,
// issuer, expiry) must be refused by wok itself, as must a replayed
// callback, a reused code, a wrong verifier, an unlisted redirect_to and
// an email that belongs to a password account.
//
// Environment: WOK_URL (the server, started with --allow-http-issuers),
// WOK_PROJECT, WOK_PUBLIC_KEY and WOK_SERVICE_KEY (keys of the project).
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createClient } from '@supabase/supabase-js';
import { OAuth2Server, Events } from 'oauth2-mock-server';

const url = process.env.WOK_URL;
const project = process.env.WOK_PROJECT;
const key = process.env.WOK_PUBLIC_KEY;
const serviceKey = process.env.WOK_SERVICE_KEY;
// A browser follows /authorize with no key: the client is made with the
// project's own URL.
const projectUrl = `${url}/p/${project}`;
const landing = 'https://app.example/done';

const step = (name) => console.log(`step: ${name}`);
const ok = ({ data, error }) => {
  assert.equal(error, null, `unexpected error: ${error?.message} (${error?.code})`);
  return data;
};

const idp = new OAuth2Server();
await idp.issuer.keys.generate('RS256');
await idp.start(0, '127.0.0.1');
idp.issuer.url = `http://127.0.0.1:${idp.address().port}`;
const issuer = idp.issuer.url;

try {
  step('provider settings');
  const admin = (method, body) =>
    fetch(`${projectUrl}/auth/v1/admin/config`, {
      method,
      headers: { apikey: serviceKey, Authorization: `Bearer ${serviceKey}`, 'content-type': 'application/json' },
      body: body && JSON.stringify(body),
    });
  const settings = {
    site_url: 'https://app.example/',
    redirect_urls: ['https://app.example/*'],
    providers: [{ name: 'corp', issuer, client_id: 'wok-test-client', client_secret: 's3cret', scopes: ['email', 'profile'] }],
  };
  let answer = await admin('PUT', { ...settings, providers: [{ ...settings.providers[0], name: 'Corp!' }] });
  assert.equal(answer.status, 400, 'a bad provider name is refused');
  assert.equal((await answer.json()).code, 'validation_failed');
  answer = await admin('PUT', settings);
  assert.equal(answer.status, 200, await answer.text());
  let shown = await (await admin('GET')).json();
  assert.equal(shown.providers[0].client_secret_set, true);
  assert.equal(shown.providers[0].client_secret, undefined, 'the secret is never shown');
  assert.equal(shown.providers[0].sealed_client_secret, undefined);
  answer = await fetch(`${projectUrl}/auth/v1/settings`);
  assert.equal((await answer.json()).external.corp, true);

  // The ID token the mock signs next: claims set (or forged) per scenario.
  // (The mock signs an access token first, which has a scope.)
  let scenario = null;
  idp.service.on(Events.BeforeTokenSigning, (token) => {
    if ('scope' in token.payload || scenario === null) return;
    const change = scenario;
    scenario = null;
    Object.assign(token.payload, change(token.payload));
  });
  const nextToken = (change) => {
    scenario = change;
  };

  const client = () =>
    createClient(projectUrl, key, {
      auth: { flowType: 'pkce', persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    });

  // The browser: /authorize to the provider, its authorize endpoint back to
  // wok's callback, the callback to the app. The last Location, and the
  // callback URL (to replay it).
  const browse = async (authorizeUrl) => {
    const answer = await fetch(authorizeUrl, { redirect: 'manual' });
    assert.equal(answer.status, 302, `authorize: ${answer.status} ${await answer.text()}`);
    return atIdp(new URL(answer.headers.get('location')));
  };
  // From the provider's authorization endpoint on.
  const atIdp = async (toIdp) => {
    assert.equal(toIdp.origin, issuer);
    assert.equal(toIdp.searchParams.get('code_challenge_method'), 'S256', 'PKCE toward the provider');
    assert.ok(toIdp.searchParams.get('nonce'), 'a nonce toward the provider');
    assert.equal(toIdp.searchParams.get('client_id'), 'wok-test-client');
    assert.equal(toIdp.searchParams.get('redirect_uri'), `${projectUrl}/auth/v1/callback`);
    let answer = await fetch(toIdp, { redirect: 'manual' });
    assert.equal(answer.status, 302);
    const callback = answer.headers.get('location');
    assert.ok(callback.startsWith(`${projectUrl}/auth/v1/callback?`), callback);
    answer = await fetch(callback, { redirect: 'manual' });
    assert.equal(answer.status, 302, `callback: ${answer.status} ${await answer.text()}`);
    return { location: new URL(answer.headers.get('location')), callback };
  };

  const signIn = async (claims, change = () => ({})) => {
    const supabase = client();
    const { url: authorizeUrl } = ok(
      await supabase.auth.signInWithOAuth({ provider: 'corp', options: { redirectTo: landing, skipBrowserRedirect: true } }),
    );
    assert.ok(authorizeUrl.startsWith(`${projectUrl}/auth/v1/authorize?`), authorizeUrl);
    nextToken((payload) => ({ ...claims, ...change(payload) }));
    const { location, callback } = await browse(authorizeUrl);
    assert.equal(`${location.origin}${location.pathname}`, landing);
    return { supabase, location, callback };
  };

  const refused = async (what, claims, change, errorCode, describes) => {
    step(`refused: ${what}`);
    const { location } = await signIn(claims, change);
    assert.equal(location.searchParams.get('code'), null, `${what}: no code`);
    assert.equal(location.searchParams.get('error'), 'access_denied', location.href);
    assert.equal(location.searchParams.get('error_code'), errorCode, location.href);
    if (describes) assert.match(location.searchParams.get('error_description'), describes, location.href);
  };

  const ann = { sub: 'ann-sub', email: 'ann.idp@example.com', email_verified: true, name: 'Ann' };

  step('sign-in with the provider');
  let { supabase, location, callback } = await signIn(ann);
  const code = location.searchParams.get('code');
  assert.ok(code, `a code: ${location.href}`);
  let data = ok(await supabase.auth.exchangeCodeForSession(code));
  assert.ok(data.session.access_token);
  assert.ok(data.session.provider_token, "the provider's own tokens, this once");
  assert.ok(data.session.provider_refresh_token);
  assert.equal(data.user.email, ann.email);
  assert.equal(data.user.app_metadata.provider, 'corp');
  assert.deepEqual(data.user.app_metadata.providers, ['corp']);
  assert.equal(data.user.identities.length, 1);
  assert.equal(data.user.identities[0].provider, 'corp');
  assert.equal(data.user.identities[0].identity_data.sub, 'ann-sub');
  assert.equal(data.user.identities[0].identity_data.iss, issuer);
  const annId = data.user.id;
  data = ok(await supabase.auth.getUser());
  assert.equal(data.user.id, annId);
  assert.equal(data.user.identities[0].provider, 'corp');
  data = ok(await supabase.auth.getClaims());
  assert.equal(data.claims.amr[0].method, 'oauth');

  step('a replayed callback is refused');
  answer = await fetch(callback, { redirect: 'manual' });
  assert.equal(answer.status, 400);
  assert.equal((await answer.json()).code, 'bad_oauth_state');
  assert.equal(answer.headers.get('location'), null);

  step('a reused code is refused');
  answer = await fetch(`${projectUrl}/auth/v1/token?grant_type=pkce`, {
    method: 'POST',
    headers: { apikey: key, 'content-type': 'application/json' },
    body: JSON.stringify({ auth_code: code, code_verifier: 'x'.repeat(64) }),
  });
  assert.equal(answer.status, 400);
  assert.equal((await answer.json()).code, 'flow_state_not_found');

  step('the same subject again: the same user');
  ({ supabase, location } = await signIn({ ...ann, name: 'Ann B.' }));
  data = ok(await supabase.auth.exchangeCodeForSession(location.searchParams.get('code')));
  assert.equal(data.user.id, annId);
  assert.equal(data.user.identities.length, 1);
  assert.equal(data.user.identities[0].identity_data.name, 'Ann B.');

  step('another subject: another user');
  ({ supabase, location } = await signIn({ sub: 'bob-sub', email: 'bob.idp@example.com', email_verified: true }));
  data = ok(await supabase.auth.exchangeCodeForSession(location.searchParams.get('code')));
  assert.notEqual(data.user.id, annId);
  assert.equal(data.user.email, 'bob.idp@example.com');
  const bob = supabase;

  step('an unverified email stays on the identity');
  ({ supabase, location } = await signIn({ sub: 'dan-sub', email: 'dan@example.com', email_verified: false }));
  data = ok(await supabase.auth.exchangeCodeForSession(location.searchParams.get('code')));
  assert.equal(data.user.email, '');
  assert.equal(data.user.identities[0].email, 'dan@example.com');

  // Each forged ID token (the mock signs whatever it is told).
  await refused('another audience', ann, () => ({ aud: 'another-client' }), 'bad_oauth_callback', /audience/i);
  await refused('a second audience', ann, () => ({ aud: ['wok-test-client', 'another-client'] }), 'bad_oauth_callback', /audience/i);
  await refused('another nonce', ann, () => ({ nonce: 'forged-nonce' }), 'bad_oauth_callback', /nonce/i);
  await refused('no nonce', ann, () => ({ nonce: undefined }), 'bad_oauth_callback', /nonce/i);
  await refused('another issuer', ann, () => ({ iss: 'http://127.0.0.1:1' }), 'bad_oauth_callback', /issuer/i);
  const now = Math.floor(Date.now() / 1000);
  await refused('an expired ID token', ann, () => ({ iat: now - 7200, nbf: now - 7200, exp: now - 3600 }), 'bad_oauth_callback', /expired/i);

  step('refused: the provider refuses the code');
  idp.service.once(Events.BeforeResponse, (response) => {
    response.body = { error: 'invalid_grant' };
    response.statusCode = 400;
  });
  ({ location } = await signIn(ann));
  assert.equal(location.searchParams.get('code'), null);
  assert.equal(location.searchParams.get('error_code'), 'bad_oauth_callback', location.href);

  step('refused: the user says no at the provider');
  idp.service.once(Events.BeforeAuthorizeRedirect, (redirect) => {
    redirect.url.searchParams.delete('code');
    redirect.url.searchParams.set('error', 'access_denied');
    redirect.url.searchParams.set('error_description', 'the user said no');
  });
  ({ location } = await signIn(ann));
  nextToken(null);
  assert.equal(location.searchParams.get('code'), null);
  assert.equal(location.searchParams.get('error_code'), 'bad_oauth_callback', location.href);
  assert.match(location.searchParams.get('error_description'), /the user said no/);

  step('an email of a password account never signs into it');
  const carol = client();
  data = ok(await carol.auth.signUp({ email: 'carol@example.com', password: 'correct horse battery staple' }));
  const carolId = data.user.id;
  await refused(
    'the email of a password account',
    { sub: 'carol-sub', email: 'Carol@Example.com', email_verified: true },
    () => ({}),
    'email_exists',
    /exists/i,
  );
  data = ok(await carol.auth.signInWithPassword({ email: 'carol@example.com', password: 'correct horse battery staple' }));
  assert.equal(data.user.id, carolId);
  assert.deepEqual(
    data.user.identities.map((identity) => identity.provider),
    ['email'],
    'no identity was linked to the password account',
  );

  step('linking is off unless the project allows it');
  let error = (await carol.auth.linkIdentity({ provider: 'corp', options: { redirectTo: landing } })).error;
  assert.equal(error?.code, 'manual_linking_disabled');
  answer = await admin('PUT', { ...settings, manual_linking: true });
  assert.equal(answer.status, 200, await answer.text());

  step('a signed-in user links a provider identity to itself, explicitly');
  const carolAtIdp = { sub: 'carol-sub', email: 'carol@example.com', email_verified: true };
  data = ok(await carol.auth.linkIdentity({ provider: 'corp', options: { redirectTo: landing } }));
  nextToken(() => carolAtIdp);
  ({ location } = await atIdp(new URL(data.url)));
  data = ok(await carol.auth.exchangeCodeForSession(location.searchParams.get('code')));
  assert.equal(data.user.id, carolId);
  assert.deepEqual(data.user.identities.map((identity) => identity.provider), ['email', 'corp']);
  assert.deepEqual(data.user.app_metadata.providers, ['email', 'corp']);
  ({ supabase, location } = await signIn(carolAtIdp));
  data = ok(await supabase.auth.exchangeCodeForSession(location.searchParams.get('code')));
  assert.equal(data.user.id, carolId, 'the provider signs into the linked account');

  step("another user's identity is not linked");
  data = ok(await carol.auth.linkIdentity({ provider: 'corp', options: { redirectTo: landing } }));
  nextToken(() => ann);
  ({ location } = await atIdp(new URL(data.url)));
  assert.equal(location.searchParams.get('code'), null);
  assert.equal(location.searchParams.get('error_code'), 'identity_already_exists', location.href);
  error = (await client().auth.linkIdentity({ provider: 'corp', options: { redirectTo: landing } })).error;
  assert.ok(error, 'linking needs a session');

  step('unlinking');
  const { identities } = ok(await carol.auth.getUserIdentities());
  ok(await carol.auth.unlinkIdentity(identities.find((identity) => identity.provider === 'corp')));
  data = ok(await carol.auth.getUser());
  assert.deepEqual(data.user.identities.map((identity) => identity.provider), ['email']);
  assert.deepEqual(data.user.app_metadata.providers, ['email']);
  await refused('an unlinked identity with the email of a password account', carolAtIdp, () => ({}), 'email_exists');
  const bobIdentities = ok(await bob.auth.getUserIdentities()).identities;
  error = (await bob.auth.unlinkIdentity(bobIdentities[0])).error;
  assert.equal(error?.code, 'single_identity_not_deletable');

  step('an unlisted redirect_to is refused, and not redirected to');
  for (const redirectTo of ['https://evil.example/done', 'https://app.example.evil.example/']) {
    const { url: authorizeUrl } = ok(
      await client().auth.signInWithOAuth({ provider: 'corp', options: { redirectTo, skipBrowserRedirect: true } }),
    );
    answer = await fetch(authorizeUrl, { redirect: 'manual' });
    assert.equal(answer.status, 400, redirectTo);
    assert.equal(answer.headers.get('location'), null);
    assert.equal((await answer.json()).code, 'validation_failed');
  }

  step('an unknown provider is refused');
  answer = await fetch(`${projectUrl}/auth/v1/authorize?provider=nobody&redirect_to=${encodeURIComponent(landing)}`, {
    redirect: 'manual',
  });
  assert.equal(answer.status, 400);
  assert.equal((await answer.json()).code, 'validation_failed');

  // The client's PKCE by hand: a verifier of our own.
  const pkce = () => {
    const verifier = randomBytes(32).toString('base64url');
    return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
  };
  const codeFor = async (challenge) => {
    nextToken(() => ann);
    const { location } = await browse(
      `${projectUrl}/auth/v1/authorize?provider=corp&redirect_to=${encodeURIComponent(landing)}` +
        `&code_challenge=${challenge}&code_challenge_method=s256`,
    );
    return location.searchParams.get('code');
  };
  const trade = (authCode, verifier) =>
    fetch(`${url}/auth/v1/token?grant_type=pkce`, {
      method: 'POST',
      headers: { apikey: key, 'content-type': 'application/json' },
      body: JSON.stringify({ auth_code: authCode, code_verifier: verifier }),
    });

  step('a wrong code_verifier is refused, and the code is used up');
  let flow = pkce();
  let authCode = await codeFor(flow.challenge);
  answer = await trade(authCode, pkce().verifier);
  assert.equal(answer.status, 400);
  assert.equal((await answer.json()).code, 'bad_code_verifier');
  answer = await trade(authCode, flow.verifier);
  assert.equal(answer.status, 400);
  assert.equal((await answer.json()).code, 'flow_state_not_found');

  step('a code is traded once');
  flow = pkce();
  authCode = await codeFor(flow.challenge);
  answer = await trade(authCode, flow.verifier);
  assert.equal(answer.status, 200, await answer.clone().text());
  assert.equal((await answer.json()).user.id, annId);
  answer = await trade(authCode, flow.verifier);
  assert.equal(answer.status, 400);
  assert.equal((await answer.json()).code, 'flow_state_not_found');

  step('a plain code_challenge_method is refused');
  answer = await fetch(
    `${projectUrl}/auth/v1/authorize?provider=corp&redirect_to=${encodeURIComponent(landing)}` +
      `&code_challenge=${flow.verifier}&code_challenge_method=plain`,
    { redirect: 'manual' },
  );
  assert.equal(answer.status, 400);

  step('the implicit flow: the session in the fragment');
  nextToken(() => ann);
  ({ location } = await browse(`${projectUrl}/auth/v1/authorize?provider=corp&redirect_to=${encodeURIComponent(landing)}`));
  const fragment = new URLSearchParams(location.hash.slice(1));
  assert.ok(fragment.get('access_token'), location.href);
  assert.ok(fragment.get('provider_token'), location.href);
  const implicit = createClient(projectUrl, key, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
  });
  data = ok(
    await implicit.auth.setSession({ access_token: fragment.get('access_token'), refresh_token: fragment.get('refresh_token') }),
  );
  assert.equal(data.user.id, annId);

  console.log('ok');
} finally {
  await idp.stop();
}

// The unmodified supabase-js auth client against a wok server: sign-up,
// password sign-in, the user, local verification of the access token
// through wok's JWKS, refresh, update, anonymous users becoming permanent,
// and sign-out ending sessions at once. Asserts as it goes; exits non-zero
// on the first failure.
//
// Environment: WOK_URL (the server), WOK_PUBLIC_KEY (a public key of the
// project), WOK_OTHER_PUBLIC_KEY (a public key of another project),
// WOK_SERVICE_KEY (a service key of the project, for the admin API).
import assert from 'node:assert/strict';
import { createClient } from '@supabase/supabase-js';

const url = process.env.WOK_URL;
const key = process.env.WOK_PUBLIC_KEY;
const otherKey = process.env.WOK_OTHER_PUBLIC_KEY;
const serviceKey = process.env.WOK_SERVICE_KEY;

// Every request a client sends, to tell a local check from a round trip.
const sent = [];
const counting = (input, init) => {
  sent.push(`${init?.method ?? 'GET'} ${new URL(input.url ?? input).pathname}`);
  return fetch(input, init);
};

const client = (apiKey = key) =>
  createClient(url, apiKey, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    global: { fetch: counting },
  });

const step = (name) => console.log(`step: ${name}`);
const ok = ({ data, error }) => {
  assert.equal(error, null, `unexpected error: ${error?.message} (${error?.code})`);
  return data;
};
const raw = (path, token, apiKey = key) =>
  fetch(`${url}${path}`, { headers: { apikey: apiKey, Authorization: `Bearer ${token}` } });

const email = `ann-${process.pid}@example.com`;
const password = 'correct horse battery staple';

step('sign-up');
const ann = client();
let data = ok(await ann.auth.signUp({ email, password, options: { data: { name: 'Ann' } } }));
assert.ok(data.session?.access_token, 'a session after sign-up');
assert.equal(data.user.email, email);
assert.equal(data.user.user_metadata.name, 'Ann');
assert.equal(data.user.is_anonymous, false);
const annId = data.user.id;

step('refused sign-ups');
let error = (await client().auth.signUp({ email: `bob-${process.pid}@example.com`, password: 'password1' })).error;
assert.equal(error?.code, 'weak_password', 'a common password is refused');
error = (await client().auth.signUp({ email: `bob-${process.pid}@example.com`, password: 'short' })).error;
assert.equal(error?.code, 'weak_password', 'a short password is refused');
error = (await client().auth.signUp({ email, password })).error;
assert.equal(error?.code, 'email_exists');

step('password sign-in');
const annAgain = client();
data = ok(await annAgain.auth.signInWithPassword({ email: email.toUpperCase(), password }));
assert.equal(data.user.id, annId);
error = (await client().auth.signInWithPassword({ email, password: 'a wrong password' })).error;
assert.equal(error?.code, 'invalid_credentials');
assert.equal(error?.status, 400);
error = (await client().auth.signInWithPassword({ email: 'nobody@example.com', password })).error;
assert.equal(error?.code, 'invalid_credentials', 'an unknown email answers like a wrong password');
// A user of one project does not exist in another.
error = (await client(otherKey).auth.signInWithPassword({ email, password })).error;
assert.equal(error?.code, 'invalid_credentials');

step('the user, from the server');
data = ok(await annAgain.auth.getUser());
assert.equal(data.user.id, annId);
assert.equal(data.user.user_metadata.name, 'Ann');

step('claims verified locally through the JWKS');
sent.length = 0;
data = ok(await annAgain.auth.getClaims());
assert.equal(data.claims.sub, annId);
assert.equal(data.claims.aud, 'authenticated');
assert.equal(data.claims.role, 'authenticated');
assert.equal(data.header.alg, 'ES256');
assert.ok(data.header.kid);
assert.deepEqual(sent, ['GET /auth/v1/.well-known/jwks.json'], 'one JWKS fetch, no /user round trip');
sent.length = 0;
ok(await annAgain.auth.getClaims());
assert.deepEqual(sent, [], 'the JWKS is cached');

step('refresh');
const before = ok(await annAgain.auth.getSession()).session;
data = ok(await annAgain.auth.refreshSession());
assert.notEqual(data.session.refresh_token, before.refresh_token);
assert.equal(data.user.id, annId);

step('update the user');
data = ok(await annAgain.auth.updateUser({ data: { plan: 'pro' } }));
assert.equal(data.user.user_metadata.plan, 'pro');
assert.equal(data.user.user_metadata.name, 'Ann', 'data is merged');

step('the token on wok data routes, with the key and alone');
const annToken = ok(await annAgain.auth.getSession()).session.access_token;
let response = await raw('/v1/docs/notes', annToken);
assert.equal(response.status, 403, 'a private collection is closed to app users');
response = await fetch(`${url}/v1/docs/notes`, { headers: { Authorization: `Bearer ${annToken}` } });
assert.equal(response.status, 403);
response = await raw('/v1/docs/notes', annToken, otherKey);
assert.equal(response.status, 403, 'a key of another project does not go with the token');
response = await raw('/auth/v1/user', annToken, otherKey);
assert.equal(response.status, 401, "another project's auth refuses the token");

step('anonymous user made permanent');
const carl = client();
data = ok(await carl.auth.signInAnonymously({ options: { data: { theme: 'dark' } } }));
assert.equal(data.user.is_anonymous, true);
const carlId = data.user.id;
data = ok(await carl.auth.getClaims());
assert.equal(data.claims.is_anonymous, true);
data = ok(await carl.auth.updateUser({ email: `carl-${process.pid}@example.com`, password }));
assert.equal(data.user.is_anonymous, false);
assert.equal(data.user.id, carlId);
data = ok(await client().auth.signInWithPassword({ email: `carl-${process.pid}@example.com`, password }));
assert.equal(data.user.id, carlId, 'the same user, signed in with its new email');

step('global sign-out ends every session at once');
const firstToken = ok(await ann.auth.getSession()).session.access_token;
const secondToken = ok(await annAgain.auth.getSession()).session.access_token;
assert.equal((await raw('/auth/v1/user', firstToken)).status, 200);
ok(await ann.auth.signOut({ scope: 'global' }));
for (const token of [firstToken, secondToken]) {
  response = await raw('/auth/v1/user', token);
  assert.equal(response.status, 403, 'an ended session\'s access token is refused');
  assert.equal((await response.json()).code, 'session_not_found');
}
error = (await annAgain.auth.getUser()).error;
assert.ok(error, 'the other client learns its session has ended');
error = (await annAgain.auth.refreshSession()).error;
assert.ok(error, 'an ended session does not refresh');
data = ok(await client().auth.signInWithPassword({ email, password }));
assert.equal(data.user.id, annId, 'the user signs in again');

step('the admin API with a service key');
const service = client(serviceKey);
error = (await client().auth.admin.listUsers()).error;
assert.equal(error?.status, 403, 'a public key is no admin');
data = ok(await service.auth.admin.listUsers({ page: 1, perPage: 1 }));
assert.equal(data.users.length, 1);
assert.equal(data.total, 2);
data = ok(await service.auth.admin.createUser({
  email: `dora-${process.pid}@example.com`, password, email_confirm: true,
  app_metadata: { roles: ['editor'] }, user_metadata: { name: 'Dora' },
}));
const doraId = data.user.id;
assert.deepEqual(data.user.app_metadata.roles, ['editor']);
const dora = client();
data = ok(await dora.auth.signInWithPassword({ email: `dora-${process.pid}@example.com`, password }));
data = ok(await dora.auth.getClaims());
assert.deepEqual(data.claims.app_metadata.roles, ['editor'], 'app_metadata travels in the token');
error = (await dora.auth.updateUser({ data: { roles: ['admin'] } })).error;
assert.equal(error, null);
data = ok(await service.auth.admin.getUserById(doraId));
assert.deepEqual(data.user.app_metadata.roles, ['editor'], 'a user cannot change its app_metadata');
const doraToken = ok(await dora.auth.getSession()).session.access_token;
ok(await service.auth.admin.updateUserById(doraId, { ban_duration: '24h' }));
assert.equal((await raw('/auth/v1/user', doraToken)).status, 403, 'a ban ends the sessions at once');
error = (await client().auth.signInWithPassword({ email: `dora-${process.pid}@example.com`, password })).error;
assert.equal(error?.code, 'user_banned');
ok(await service.auth.admin.deleteUser(doraId));
error = (await service.auth.admin.getUserById(doraId)).error;
assert.equal(error?.status, 404);

console.log('ok');

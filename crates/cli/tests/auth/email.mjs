// The unmodified supabase-js auth client against a wok server, by email:
// a one-time code, a magic link followed over HTTP, password recovery,
// sign-up with confirmation, and the service side's generateLink without
// SMTP. Mail is read from the SMTP sink's file (one JSON line a message).
// Asserts as it goes; exits non-zero on the first failure.
//
// Environment: WOK_URL (the server); WOK_MAILS (the sink's file);
// WOK_PUBLIC_KEY (a public key of a project that mails through the sink,
// whose site_url is http://app.test/ and whose redirect_urls allow
// http://app.test/welcome/*); WOK_CONFIRM_KEY (a public key of a project
// that mails through the sink with email_confirmation on);
// WOK_NO_SMTP_SERVICE_KEY (a service key of a project without SMTP).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createClient } from '@supabase/supabase-js';

const url = process.env.WOK_URL;
const mails = process.env.WOK_MAILS;

const client = (apiKey) =>
  createClient(url, apiKey, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
  });
const step = (name) => console.log(`step: ${name}`);
const ok = ({ data, error }) => {
  assert.equal(error, null, `unexpected error: ${error?.message} (${error?.code})`);
  return data;
};

// The messages the sink received so far.
const received = () =>
  readFileSync(mails, 'utf8').split('\n').filter((line) => line).map((line) => JSON.parse(line));
// The next message to `to` after the first `seen` of them, within 10 s.
const nextMail = async (to, seen) => {
  for (let tries = 0; tries < 500; tries++) {
    const mine = received().filter((mail) => mail.to.includes(to));
    if (mine.length > seen) return mine[seen];
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`no mail to ${to}`);
};
const mailsTo = (to) => received().filter((mail) => mail.to.includes(to)).length;
const codeOf = (mail) => mail.body.match(/\b(\d{6})\b/)[1];
const linkOf = (mail) => mail.body.match(/(http:\/\/\S+\/verify\?\S+)/)[1];

const app = client(process.env.WOK_PUBLIC_KEY);
const email = `erin-${process.pid}@example.com`;
const password = 'correct horse battery staple';
ok(await app.auth.signUp({ email, password }));

step('signInWithOtp, the code from the mail, verifyOtp');
let seen = mailsTo(email);
let data = ok(await app.auth.signInWithOtp({ email, options: { shouldCreateUser: false } }));
assert.equal(data.session, null);
let mail = await nextMail(email, seen++);
assert.equal(mail.subject, 'Your sign-in code');
const code = codeOf(mail);
const signedIn = client(process.env.WOK_PUBLIC_KEY);
data = ok(await signedIn.auth.verifyOtp({ email, token: code, type: 'email' }));
assert.ok(data.session.access_token);
assert.equal(data.user.email, email);
assert.equal(ok(await signedIn.auth.getUser()).user.email, email);

step('a code works once');
let error = (await client(process.env.WOK_PUBLIC_KEY).auth.verifyOtp({ email, token: code, type: 'email' })).error;
assert.equal(error?.code, 'otp_expired');
assert.equal(error?.status, 403);

step('a new user by code');
const frank = `frank-${process.pid}@example.com`;
ok(await app.auth.signInWithOtp({ email: frank, options: { data: { name: 'Frank' } } }));
mail = await nextMail(frank, 0);
data = ok(await client(process.env.WOK_PUBLIC_KEY).auth.verifyOtp({ email: frank, token: codeOf(mail), type: 'email' }));
assert.equal(data.user.user_metadata.name, 'Frank');
assert.ok(data.user.email_confirmed_at, 'the inbox is proven');

step('the magic link, followed over HTTP');
ok(await app.auth.signInWithOtp({ email, options: { emailRedirectTo: 'http://app.test/welcome/home' } }));
mail = await nextMail(email, seen++);
const link = linkOf(mail);
assert.ok(link.startsWith(`${url}/p/`), link);
let response = await fetch(link, { redirect: 'manual' });
assert.equal(response.status, 303);
let location = response.headers.get('location');
assert.ok(location.startsWith('http://app.test/welcome/home#access_token='), location);
const fragment = new URLSearchParams(location.split('#')[1]);
assert.equal(fragment.get('token_type'), 'bearer');
assert.equal(fragment.get('type'), 'magiclink');
assert.ok(fragment.get('refresh_token'));
response = await fetch(`${url}/auth/v1/user`, {
  headers: { apikey: process.env.WOK_PUBLIC_KEY, Authorization: `Bearer ${fragment.get('access_token')}` },
});
assert.equal(response.status, 200);
assert.equal((await response.json()).email, email);
// Followed again: used up, and said so at the target.
response = await fetch(link, { redirect: 'manual' });
assert.equal(response.status, 303);
location = response.headers.get('location');
assert.ok(location.startsWith('http://app.test/welcome/home#error=access_denied&error_code=otp_expired'), location);

step('a redirect nobody allowed is refused, and never redirected to');
error = (await app.auth.signInWithOtp({ email, options: { emailRedirectTo: 'http://evil.test/welcome/home' } })).error;
assert.equal(error?.status, 400);
for (const target of ['http://evil.test/', 'http://app.test/welcome', 'http://app.test.evil.test/welcome/x']) {
  response = await fetch(`${link.split('&redirect_to=')[0]}&redirect_to=${encodeURIComponent(target)}`, { redirect: 'manual' });
  assert.equal(response.status, 400, target);
  assert.equal(response.headers.get('location'), null);
}
assert.equal(mailsTo(email), seen, 'nothing mailed for a refused redirect');

step('resetPasswordForEmail, the code, verifyOtp, updateUser');
ok(await app.auth.resetPasswordForEmail(email));
mail = await nextMail(email, seen++);
assert.equal(mail.subject, 'Reset your password');
const recovering = client(process.env.WOK_PUBLIC_KEY);
data = ok(await recovering.auth.verifyOtp({ email, token: codeOf(mail), type: 'recovery' }));
assert.ok(data.session.access_token);
const newPassword = 'a brand new passphrase';
ok(await recovering.auth.updateUser({ password: newPassword }));
error = (await client(process.env.WOK_PUBLIC_KEY).auth.signInWithPassword({ email, password })).error;
assert.equal(error?.code, 'invalid_credentials', 'the old password is refused');
ok(await client(process.env.WOK_PUBLIC_KEY).auth.signInWithPassword({ email, password: newPassword }));

step('an unknown address is answered like a known one');
const known = await app.auth.resetPasswordForEmail(email);
const unknown = await app.auth.resetPasswordForEmail(`nobody-${process.pid}@example.com`);
assert.deepEqual(unknown, known);
const knownOtp = await app.auth.signInWithOtp({ email, options: { shouldCreateUser: false } });
const unknownOtp = await app.auth.signInWithOtp({ email: `nobody-${process.pid}@example.com`, options: { shouldCreateUser: false } });
assert.deepEqual(unknownOtp, knownOtp);
seen += 2;
await nextMail(email, seen - 1);
assert.equal(mailsTo(`nobody-${process.pid}@example.com`), 0, 'nothing mailed to nobody');

step('sign-up with confirmation: no session, no sign-in until the code is verified');
const confirming = client(process.env.WOK_CONFIRM_KEY);
const gina = `gina-${process.pid}@example.com`;
data = ok(await confirming.auth.signUp({ email: gina, password }));
assert.equal(data.session, null);
assert.equal(data.user.email, gina);
assert.equal(data.user.email_confirmed_at, null);
error = (await confirming.auth.signInWithPassword({ email: gina, password })).error;
assert.equal(error?.code, 'email_not_confirmed');
error = (await confirming.auth.signInWithPassword({ email: gina, password: 'a wrong passphrase' })).error;
assert.equal(error?.code, 'invalid_credentials', 'told only to whoever knows the password');
// A taken address gets the same answer, and the owner no new mail.
const taken = ok(await confirming.auth.signUp({ email: gina, password: 'another long passphrase' }));
assert.equal(taken.session, null);
assert.deepEqual(Object.keys(taken.user).sort(), Object.keys(data.user).sort());
mail = await nextMail(gina, 0);
assert.equal(mail.subject, 'Confirm your email');
// The newest confirmation counts (the taken sign-up mailed the unconfirmed owner again).
mail = await nextMail(gina, 1);
ok(await confirming.auth.resend({ type: 'signup', email: gina }));
mail = await nextMail(gina, 2);
data = ok(await confirming.auth.verifyOtp({ email: gina, token: codeOf(mail), type: 'signup' }));
assert.ok(data.session.access_token);
assert.ok(data.user.email_confirmed_at);
ok(await client(process.env.WOK_CONFIRM_KEY).auth.signInWithPassword({ email: gina, password }));

step('a new email is confirmed before it counts');
const signedInGina = client(process.env.WOK_CONFIRM_KEY);
ok(await signedInGina.auth.signInWithPassword({ email: gina, password }));
const ginaNew = `gina-new-${process.pid}@example.com`;
data = ok(await signedInGina.auth.updateUser({ email: ginaNew }));
assert.equal(data.user.email, gina, 'not before it is confirmed');
assert.equal(data.user.new_email, ginaNew);
mail = await nextMail(ginaNew, 0);
assert.equal(mail.subject, 'Confirm your new email');
data = ok(await signedInGina.auth.verifyOtp({ email: ginaNew, token: codeOf(mail), type: 'email_change' }));
assert.equal(data.user.email, ginaNew);
ok(await client(process.env.WOK_CONFIRM_KEY).auth.signInWithPassword({ email: ginaNew, password }));

step('generateLink on a project without SMTP');
const service = client(process.env.WOK_NO_SMTP_SERVICE_KEY);
const hana = `hana-${process.pid}@example.com`;
data = ok(await service.auth.admin.generateLink({ type: 'magiclink', email: hana }));
assert.equal(data.user.email, hana);
assert.equal(data.properties.verification_type, 'magiclink');
assert.match(data.properties.email_otp, /^\d{6}$/);
assert.ok(data.properties.action_link.includes(`token=${data.properties.hashed_token}`));
const hanaClient = client(process.env.WOK_NO_SMTP_SERVICE_KEY);
const session = ok(await hanaClient.auth.verifyOtp({ token_hash: data.properties.hashed_token, type: 'magiclink' })).session;
assert.equal(session.user.email, hana);
data = ok(await service.auth.admin.generateLink({ type: 'recovery', email: hana }));
ok(await hanaClient.auth.verifyOtp({ email: hana, token: data.properties.email_otp, type: 'recovery' }));
error = (await service.auth.admin.generateLink({ type: 'recovery', email: `nobody-${process.pid}@example.com` })).error;
assert.equal(error?.status, 404, 'the service side is told');
assert.equal(mailsTo(hana), 0);

// flowType 'pkce': the link gives the client that asked for it a code,
// which only its verifier trades for a session; no tokens in a URL.
const pkceClient = () =>
  createClient(url, process.env.WOK_PUBLIC_KEY, {
    auth: { flowType: 'pkce', persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
  });
const followed = async (mail, landing) => {
  const response = await fetch(linkOf(mail), { redirect: 'manual' });
  assert.equal(response.status, 303);
  const location = new URL(response.headers.get('location'));
  assert.equal(`${location.origin}${location.pathname}`, landing);
  assert.equal(location.hash, '', 'no tokens in the URL');
  const code = location.searchParams.get('code');
  assert.ok(code, location.href);
  return code;
};
const trade = (authCode, verifier) =>
  fetch(`${url}/auth/v1/token?grant_type=pkce`, {
    method: 'POST',
    headers: { apikey: process.env.WOK_PUBLIC_KEY, 'content-type': 'application/json' },
    body: JSON.stringify({ auth_code: authCode, code_verifier: verifier }),
  });

step('PKCE: a magic link gives a code, exchangeCodeForSession a session');
const ivy = pkceClient();
ok(await ivy.auth.signInWithOtp({ email, options: { shouldCreateUser: false, emailRedirectTo: 'http://app.test/welcome/pkce' } }));
mail = await nextMail(email, seen++);
const magicCode = await followed(mail, 'http://app.test/welcome/pkce');
response = await trade(magicCode, 'a'.repeat(43));
assert.equal(response.status, 400, 'another verifier is refused');
assert.equal((await response.json()).code, 'bad_code_verifier');
error = (await ivy.auth.exchangeCodeForSession(magicCode)).error;
assert.equal(error?.code, 'flow_state_not_found', 'and the code is used up');
ok(await ivy.auth.signInWithOtp({ email, options: { shouldCreateUser: false, emailRedirectTo: 'http://app.test/welcome/pkce' } }));
mail = await nextMail(email, seen++);
const secondCode = await followed(mail, 'http://app.test/welcome/pkce');
data = ok(await ivy.auth.exchangeCodeForSession(secondCode));
assert.equal(data.user.email, email);
assert.equal(ok(await ivy.auth.getClaims()).claims.amr[0].method, 'magiclink');
response = await trade(secondCode, 'a'.repeat(43));
assert.equal((await response.json()).code, 'flow_state_not_found', 'a code is traded once');
// The typed code of a PKCE request still signs in at once.
ok(await pkceClient().auth.signInWithOtp({ email, options: { shouldCreateUser: false } }));
mail = await nextMail(email, seen++);
ok(await client(process.env.WOK_PUBLIC_KEY).auth.verifyOtp({ email, token: codeOf(mail), type: 'email' }));

step('PKCE: recovery');
const resetting = pkceClient();
ok(await resetting.auth.resetPasswordForEmail(email, { redirectTo: 'http://app.test/welcome/reset' }));
mail = await nextMail(email, seen++);
data = ok(await resetting.auth.exchangeCodeForSession(await followed(mail, 'http://app.test/welcome/reset')));
assert.equal(data.redirectType, 'recovery');
assert.equal(ok(await resetting.auth.getClaims()).claims.amr[0].method, 'recovery');
ok(await resetting.auth.updateUser({ password: 'yet another passphrase' }));
ok(await client(process.env.WOK_PUBLIC_KEY).auth.signInWithPassword({ email, password: 'yet another passphrase' }));

step('PKCE: only S256');
response = await fetch(`${url}/auth/v1/otp`, {
  method: 'POST',
  headers: { apikey: process.env.WOK_PUBLIC_KEY, 'content-type': 'application/json' },
  body: JSON.stringify({ email, code_challenge: 'a'.repeat(43), code_challenge_method: 'plain' }),
});
assert.equal(response.status, 400);
assert.equal(mailsTo(email), seen, 'nothing mailed for a refused challenge');

console.log('ok');

// The unmodified supabase-js auth client's MFA API against a wok server,
// with the codes an authenticator app would show computed by pyotp (from
// the auth tools' virtualenv): enroll a TOTP factor, challenge, verify to
// aal2, a replayed code and wrong codes refused, a challenge ended by
// wrong codes and by its expiry, refreshes keeping aal2, unenroll needing
// aal2, the admin's view. Asserts as it goes; exits non-zero on the first
// failure.
//
// Environment: WOK_URL (the server), WOK_PUBLIC_KEY (a public key of the
// project), WOK_SERVICE_KEY (a service key of it), WOK_PYTHON (a Python
// with pyotp).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createClient } from '@supabase/supabase-js';

const url = process.env.WOK_URL;
const key = process.env.WOK_PUBLIC_KEY;
const serviceKey = process.env.WOK_SERVICE_KEY;
const python = process.env.WOK_PYTHON;

const client = (apiKey = key) =>
  createClient(url, apiKey, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
  });

const step = (name) => console.log(`step: ${name}`);
const ok = ({ data, error }) => {
  assert.equal(error, null, `unexpected error: ${error?.message} (${error?.code})`);
  return data;
};
const claims = (token) => JSON.parse(Buffer.from(token.split('.')[1], 'base64url'));
// The code an authenticator shows for `secret`, `offset` seconds from now.
const totp = (secret, offset = 0) =>
  execFileSync(python, [
    '-c',
    'import pyotp, sys, time; print(pyotp.TOTP(sys.argv[1]).at(time.time() + int(sys.argv[2])))',
    secret,
    String(offset),
  ])
    .toString()
    .trim();
const wrongFor = (code) => String((Number(code) + 500001) % 1000000).padStart(6, '0');

const email = `ann-${process.pid}@example.com`;
const password = 'correct horse battery staple';

step('a new user is at aal1, with nothing more to reach');
const ann = client();
const annId = ok(await ann.auth.signUp({ email, password })).user.id;
let aal = ok(await ann.auth.mfa.getAuthenticatorAssuranceLevel());
assert.equal(aal.currentLevel, 'aal1');
assert.equal(aal.nextLevel, 'aal1');

step('enroll a TOTP factor');
const enrolled = ok(await ann.auth.mfa.enroll({ factorType: 'totp', friendlyName: 'phone', issuer: 'Shop' }));
assert.equal(enrolled.type, 'totp');
assert.equal(enrolled.friendly_name, 'phone');
assert.match(enrolled.totp.secret, /^[A-Z2-7]{32}$/);
assert.ok(enrolled.totp.uri.startsWith('otpauth://totp/Shop:'), enrolled.totp.uri);
assert.ok(enrolled.totp.uri.includes(`secret=${enrolled.totp.secret}`));
assert.ok(enrolled.totp.qr_code.startsWith('data:image/svg+xml;utf-8,<svg'));
const factorId = enrolled.id;
const secret = enrolled.totp.secret;
let factors = ok(await ann.auth.mfa.listFactors());
assert.equal(factors.all.length, 1);
assert.equal(factors.all[0].status, 'unverified');
assert.equal(factors.totp.length, 0, 'an unverified factor does not count');
let error = (await ann.auth.mfa.enroll({ factorType: 'totp', friendlyName: 'phone' })).error;
assert.equal(error?.code, 'mfa_factor_name_conflict');

step('challenge, and verify with the authenticator\'s code: aal2');
let challenge = ok(await ann.auth.mfa.challenge({ factorId }));
assert.equal(challenge.type, 'totp');
assert.ok(challenge.expires_at > Date.now() / 1000 + 240, `${challenge.expires_at}`);
const first = totp(secret);
const verified = ok(await ann.auth.mfa.verify({ factorId, challengeId: challenge.id, code: first }));
assert.equal(claims(verified.access_token).aal, 'aal2');
assert.equal(verified.user.factors[0].status, 'verified');
aal = ok(await ann.auth.mfa.getAuthenticatorAssuranceLevel());
assert.equal(aal.currentLevel, 'aal2');
assert.equal(aal.nextLevel, 'aal2');
assert.deepEqual(
  aal.currentAuthenticationMethods.map((amr) => amr.method),
  ['totp', 'password'],
);
let session = ok(await ann.auth.getSession()).session;
assert.equal(claims(session.access_token).aal, 'aal2');
assert.equal(claims(session.access_token).session_id, claims(verified.access_token).session_id);
factors = ok(await ann.auth.mfa.listFactors());
assert.equal(factors.totp.length, 1);
assert.equal(factors.totp[0].id, factorId);

step('the same code again is refused');
challenge = ok(await ann.auth.mfa.challenge({ factorId }));
error = (await ann.auth.mfa.verify({ factorId, challengeId: challenge.id, code: first })).error;
assert.equal(error?.code, 'mfa_verification_failed', 'a replayed code');
error = (await ann.auth.mfa.challengeAndVerify({ factorId, code: first })).error;
assert.equal(error?.code, 'mfa_verification_failed', 'a replayed code, again');

step('wrong codes are refused; five end the challenge');
challenge = ok(await ann.auth.mfa.challenge({ factorId }));
for (let n = 0; n < 5; n++) {
  error = (await ann.auth.mfa.verify({ factorId, challengeId: challenge.id, code: wrongFor(first) })).error;
  assert.equal(error?.code, 'mfa_verification_failed', `wrong code ${n}`);
}
// The next step's code, good within the skew and never used yet.
const next = totp(secret, 30);
error = (await ann.auth.mfa.verify({ factorId, challengeId: challenge.id, code: next })).error;
assert.equal(error?.code, 'mfa_challenge_expired', 'five wrong codes ended the challenge');

step('a later step\'s code is accepted through a new challenge');
const later = ok(await ann.auth.mfa.challengeAndVerify({ factorId, code: next }));
assert.equal(claims(later.access_token).aal, 'aal2');

step('refreshes keep aal2');
session = ok(await ann.auth.refreshSession()).session;
assert.equal(claims(session.access_token).aal, 'aal2');
assert.equal((await fetch(`${url}/auth/v1/user`, {
  headers: { apikey: key, Authorization: `Bearer ${session.access_token}` },
})).status, 200);

step('a new sign-in is at aal1, with aal2 to reach; it cannot unenroll');
const annAgain = client();
ok(await annAgain.auth.signInWithPassword({ email, password }));
aal = ok(await annAgain.auth.mfa.getAuthenticatorAssuranceLevel());
assert.equal(aal.currentLevel, 'aal1');
assert.equal(aal.nextLevel, 'aal2');
error = (await annAgain.auth.mfa.unenroll({ factorId })).error;
assert.equal(error?.code, 'insufficient_aal');
error = (await annAgain.auth.mfa.enroll({ factorType: 'totp' })).error;
assert.equal(error?.code, 'insufficient_aal');

step('a challenge expires');
const settings = await fetch(`${url}/auth/v1/admin/config`, {
  method: 'PUT',
  headers: { apikey: serviceKey, Authorization: `Bearer ${serviceKey}`, 'content-type': 'application/json' },
  body: JSON.stringify({ mfa_challenge_lifetime_s: 1 }),
});
assert.equal(settings.status, 200, await settings.text());
challenge = ok(await annAgain.auth.mfa.challenge({ factorId }));
await new Promise((resolve) => setTimeout(resolve, 1100));
error = (await annAgain.auth.mfa.verify({ factorId, challengeId: challenge.id, code: totp(secret, 30) })).error;
assert.equal(error?.code, 'mfa_challenge_expired', 'an expired challenge');

step('the service side sees the factors');
const service = client(serviceKey);
const listed = ok(await service.auth.admin.mfa.listFactors({ userId: annId }));
assert.equal(listed.factors.length, 1);
assert.equal(listed.factors[0].status, 'verified');
error = (await client().auth.admin.mfa.listFactors({ userId: annId })).error;
assert.equal(error?.status, 403, 'a public key is no admin');

step('unenroll from aal2');
assert.equal(ok(await ann.auth.mfa.unenroll({ factorId })).id, factorId);
factors = ok(await ann.auth.mfa.listFactors());
assert.equal(factors.all.length, 0);
// Asked with its token, the client reads the user afresh.
const againToken = ok(await annAgain.auth.getSession()).session.access_token;
aal = ok(await annAgain.auth.mfa.getAuthenticatorAssuranceLevel(againToken));
assert.equal(aal.nextLevel, 'aal1', 'nothing more to reach');

console.log('ok');

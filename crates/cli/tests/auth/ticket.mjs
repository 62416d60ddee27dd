// The unmodified supabase-js auth client takes a session that a login
// ticket gave (`auth.setSession`), reads its user and refreshes it.
//
// Environment: WOK_URL (the server), WOK_PUBLIC_KEY (a public key of the
// project), WOK_ACCESS_TOKEN and WOK_REFRESH_TOKEN (the ticket's session),
// WOK_USER_ID (its user).
import assert from 'node:assert/strict';
import { createClient } from '@supabase/supabase-js';

const client = createClient(process.env.WOK_URL, process.env.WOK_PUBLIC_KEY, {
  auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
});
const ok = ({ data, error }) => {
  assert.equal(error, null, `unexpected error: ${error?.message} (${error?.code})`);
  return data;
};

console.log('step: setSession');
let data = ok(await client.auth.setSession({
  access_token: process.env.WOK_ACCESS_TOKEN,
  refresh_token: process.env.WOK_REFRESH_TOKEN,
}));
assert.equal(data.user.id, process.env.WOK_USER_ID);
console.log('step: the user, from the server');
data = ok(await client.auth.getUser());
assert.equal(data.user.id, process.env.WOK_USER_ID);
console.log('step: claims');
data = ok(await client.auth.getClaims());
assert.equal(data.claims.amr[0].method, 'ticket');
console.log('step: refresh');
data = ok(await client.auth.refreshSession());
assert.equal(data.user.id, process.env.WOK_USER_ID);
console.log('ok');

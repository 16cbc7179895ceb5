// Test OpenID Provider for authkit's OAuth/OIDC tests (oidc-provider 9.13.3; also runs on 8.8.1).
// Non-interactive: every authorization request is logged in as a test user and consented
// automatically. Optional per-user "forge" modes tamper with the ID token returned by the
// token endpoint, for negative tests of the relying party.
//
// Environment:
//   OP_PORT            port to listen on; 0 = an ephemeral port (default 0)
//   OP_HOST            default 127.0.0.1
//   OP_ISSUER          default http://$OP_HOST:<the port listened on>
//   OP_CLIENT_ID       default authkit-test
//   OP_CLIENT_SECRET   default authkit-test-secret
//   OP_REDIRECT_URIS   comma-separated, required
//   OP_AUTH_METHOD     client_secret_basic (default) | client_secret_post
//   OP_USERS_FILE      JSON file {"alice": {"email": "...", "email_verified": true, "forge": "..."}}
//   OP_USERS           same JSON inline (used if OP_USERS_FILE is unset)
//   OP_DEFAULT_ACCOUNT account used when the request has no login_hint (default: first user)
//   OP_CLOCK_OFFSET    seconds added to the OP's clock (iat/exp of its tokens), default 0
//   OP_IGNORE_STDIN    1 = keep running when stdin reaches EOF (for running it in the background)
// Once listening, the OP prints one line `READY <port>` on stdout. It exits when its stdin
// reaches EOF (unless OP_IGNORE_STDIN=1), so a test process that dies takes the OP with it.
//
// Choose the user per request with the standard `login_hint` authorization parameter. The OP
// keeps a login session (cookie) per browser: a browser that is already signed in as one user
// gets that user again unless the request has prompt=login and a login_hint.
// User fields: email, email_verified, name, amr (array of strings), acr (string),
//   deny (true -> access_denied),
//   forge: wrong_aud | extra_aud | wrong_iss | bare_iss | no_nonce | wrong_nonce | expired | iat_future |
//          unknown_kid | bad_signature | alg_none | hs256 | rotated_key
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';
import * as jose from 'jose';

const env = process.env;

// Exit with the parent: EOF on stdin means the test process closed its end (or died).
if (env.OP_IGNORE_STDIN !== '1') {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('close', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
}

const clockOffset = Number(env.OP_CLOCK_OFFSET || 0);
if (!Number.isFinite(clockOffset)) throw new Error('OP_CLOCK_OFFSET must be a number of seconds');
if (clockOffset !== 0) {
  const realNow = Date.now.bind(Date);
  Date.now = () => realNow() + clockOffset * 1000;
}

const port = Number(env.OP_PORT || 0);
if (!Number.isInteger(port) || port < 0) throw new Error('OP_PORT must be a port number (0 = ephemeral)');
const host = env.OP_HOST || '127.0.0.1';
const clientId = env.OP_CLIENT_ID || 'authkit-test';
const clientSecret = env.OP_CLIENT_SECRET || 'authkit-test-secret';
const redirectUris = (env.OP_REDIRECT_URIS || '').split(',').map((s) => s.trim()).filter(Boolean);
if (redirectUris.length === 0) throw new Error('OP_REDIRECT_URIS is required');
const authMethod = env.OP_AUTH_METHOD || 'client_secret_basic';
const users = JSON.parse(env.OP_USERS_FILE ? readFileSync(env.OP_USERS_FILE, 'utf8')
  : (env.OP_USERS || '{"alice":{"email":"alice@example.test","email_verified":true}}'));
const defaultAccount = env.OP_DEFAULT_ACCOUNT || Object.keys(users)[0];

// Listen first, so that the issuer can name the real port when OP_PORT=0.
const server = createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, host, resolve);
});
const boundPort = server.address().port;
const issuer = env.OP_ISSUER || `http://${host}:${boundPort}`;

// Signing keys: k1 is the provider's key; k2 is published only after the first
// `rotated_key` token (key rotation); `rogue` is never published.
async function rsaKey(kid) {
  const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
  const jwk = { ...(await jose.exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
  const { d, p, q, dp, dq, qi, ...pub } = jwk;
  return { jwk, pub, key: privateKey };
}
const k1 = await rsaKey('k1');
const k2 = await rsaKey('k2');
const rogue = await rsaKey('rogue');
let rotated = false;

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: redirectUris,
    response_types: ['code'],
    grant_types: ['authorization_code', 'refresh_token'],
    token_endpoint_auth_method: authMethod,
    id_token_signed_response_alg: 'RS256',
  }],
  jwks: { keys: [k1.jwk] },
  pkce: { required: () => true }, // S256 is the only method oidc-provider 9 supports
  scopes: ['openid', 'offline_access', 'email', 'profile'],
  // acr/amr come from the login (interactionFinished) and are only put into ID tokens when a
  // scope releases them (a standalone `acr: null, amr: null` entry would need the `claims`
  // request parameter, and `acr` is dropped entirely without `acrValues`): release them with openid.
  claims: { openid: ['sub', 'acr', 'amr'], email: ['email', 'email_verified'], profile: ['name'] },
  conformIdTokenClaims: false, // put the email claims in the ID token, as Google does
  // Issue a refresh token with every code grant (no offline_access consent dance), so that
  // the relying party's refresh path can be tested.
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  features: { devInteractions: { enabled: false } },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, sub) {
    const u = users[sub];
    if (!u) return undefined;
    return {
      accountId: sub,
      async claims() {
        return { sub, email: u.email, email_verified: u.email_verified, name: u.name };
      },
    };
  },
  // Auto-consent: give the client every scope/claim it asked for.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope(ctx.oidc.params.scope || 'openid');
    await grant.save();
    return grant;
  },
  ttl: { AccessToken: 3600, AuthorizationCode: 60, IdToken: 3600, RefreshToken: 86400,
    Grant: 86400, Interaction: 600, Session: 86400 },
});

// Non-interactive login: the interaction page logs in the login_hint (or default) user.
provider.use(async (ctx, next) => {
  if (ctx.method === 'GET' && ctx.path.startsWith('/interaction/')) {
    const { prompt, params, session, grantId } = await provider.interactionDetails(ctx.req, ctx.res);
    // The login_hint wins over an earlier login in the same browser (tests send prompt=login).
    const accountId = params.login_hint || session?.accountId || defaultAccount;
    const u = users[accountId];
    let result;
    if (!u || u.deny) {
      result = { error: 'access_denied', error_description: 'test user refused' };
    } else if (prompt.name === 'login') {
      result = { login: { accountId, amr: u.amr, acr: u.acr } };
    } else { // consent (only reached with prompt=consent, e.g. for offline_access)
      const grant = grantId ? await provider.Grant.find(grantId)
        : new provider.Grant({ accountId, clientId: params.client_id });
      const d = prompt.details;
      if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
      if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
      for (const [ind, sc] of Object.entries(d.missingResourceScopes || {})) grant.addResourceScope(ind, sc.join(' '));
      result = { consent: { grantId: await grant.save() } };
    }
    ctx.respond = false;
    await provider.interactionFinished(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
    return;
  }
  await next();
  // Publish k2 once a rotated_key token was issued.
  if (ctx.path === '/jwks' && rotated && ctx.body?.keys) ctx.body = { keys: [...ctx.body.keys, k2.pub] };
  // Tamper with the ID token for negative tests.
  if (ctx.path === '/token' && ctx.status === 200 && ctx.body?.id_token) {
    const claims = jose.decodeJwt(ctx.body.id_token);
    const forge = users[claims.sub]?.forge;
    if (forge) ctx.body = { ...ctx.body, id_token: await forgeIdToken(forge, claims) };
  }
});

async function forgeIdToken(mode, claims) {
  const now = Math.floor(Date.now() / 1000);
  const c = { ...claims };
  let key = k1.key; let kid = 'k1'; let alg = 'RS256';
  switch (mode) {
    case 'wrong_aud': c.aud = 'someone-else'; break;
    case 'extra_aud': c.aud = [clientId, 'someone-else']; break;
    case 'wrong_iss': c.iss = 'http://evil.invalid'; break;
    case 'bare_iss': c.iss = 'accounts.google.com'; break; // Google's documented alternative form
    case 'no_nonce': delete c.nonce; break;
    case 'wrong_nonce': c.nonce = randomBytes(16).toString('base64url'); break;
    case 'expired': c.iat = now - 300; c.exp = now - 120; break; // iat still acceptable: only exp fails
    case 'iat_future': c.iat = now + 3600; c.exp = now + 7200; break;
    case 'unknown_kid': key = rogue.key; kid = 'rogue'; break;
    case 'bad_signature': key = rogue.key; break; // claims to be k1, signed by another key
    case 'rotated_key': rotated = true; key = k2.key; kid = 'k2'; break;
    case 'hs256': key = new TextEncoder().encode(clientSecret); alg = 'HS256'; kid = undefined; break;
    case 'alg_none': {
      const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
      return `${b64({ alg: 'none', typ: 'JWT' })}.${b64(c)}.`;
    }
    default: throw new Error(`unknown forge mode ${mode}`);
  }
  return new jose.SignJWT(c).setProtectedHeader(kid ? { alg, kid } : { alg }).sign(key);
}

provider.on('server_error', (ctx, err) => console.error('server_error', err));
server.on('request', provider.callback());
console.error(`oidc-provider listening, issuer ${issuer}`);
console.log(`READY ${boundPort}`);

// panva/oidc-provider configured like the Tsunagu idp for the token-endpoint benchmark
// (bench/idp.py). See README.md next to this file for what is equivalent and what is not.
//
//   node server.mjs --port 8200 --client-file client.json [--code-minting]
//
// client.json: {"client_id": "...", "jwks": {"keys": [<public EC P-256 JWK>]}, "redirect_uris": [...]}
// Prints one line "ready <issuer>" on stdout once it listens. Single process, 127.0.0.1 only.

import * as crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.PEER_PORT ?? '8200' },
    'client-file': { type: 'string', default: process.env.PEER_CLIENT_FILE },
    // Bench only: POST /bench/codes mints authorization codes directly (like a login that already
    // happened), so code exchange can be measured without browser interactions. Off by default.
    'code-minting': { type: 'boolean', default: process.env.PEER_CODE_MINTING === '1' },
  },
});

const port = Number.parseInt(args.port, 10);
if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new Error(`bad port ${args.port}`);
if (!args['client-file']) throw new Error('--client-file (or PEER_CLIENT_FILE) is required');
const client = JSON.parse(readFileSync(args['client-file'], 'utf8'));

const issuer = `http://127.0.0.1:${port}`;
const resource = `${issuer}/api`; // the default resource indicator: access tokens are JWTs for it

// ES256 signing key generated at start, kept in memory (ours lives in the signer's HSM).
const signingKey = {
  ...crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' }),
  kid: crypto.randomBytes(8).toString('hex'),
  alg: 'ES256',
  use: 'sig',
};

// The stock memory adapter is an LRU of 1,000 entries: it would forget client assertion jti
// (ReplayDetection) under load. This one keeps every entry until it expires, like our seen_jti.
class MemoryAdapter {
  static stores = new Map();

  constructor(name) {
    if (!MemoryAdapter.stores.has(name)) MemoryAdapter.stores.set(name, new Map());
    this.store = MemoryAdapter.stores.get(name);
  }

  static sweep() {
    const now = Date.now();
    for (const store of MemoryAdapter.stores.values()) {
      for (const [key, entry] of store) if (entry.expiresAt <= now) store.delete(key);
    }
  }

  live(key) {
    const entry = this.store.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      this.store.delete(key);
      return undefined;
    }
    return entry;
  }

  async upsert(id, payload, expiresIn) {
    const expiresAt = expiresIn ? Date.now() + expiresIn * 1000 : Number.POSITIVE_INFINITY;
    this.store.set(id, { payload, expiresAt });
  }

  async find(id) {
    return this.live(id)?.payload;
  }

  async findByUserCode() {
    return undefined;
  }

  async findByUid(uid) {
    for (const [key, entry] of this.store) if (entry.payload.uid === uid) return this.find(key);
    return undefined;
  }

  async consume(id) {
    const entry = this.live(id);
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    this.store.delete(id);
  }

  async revokeByGrantId(grantId) {
    for (const [key, entry] of this.store) if (entry.payload.grantId === grantId) this.store.delete(key);
  }
}
setInterval(() => MemoryAdapter.sweep(), 30_000).unref();

const configuration = {
  adapter: MemoryAdapter,
  jwks: { keys: [signingKey] },
  clients: [
    {
      client_id: client.client_id,
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: 'ES256',
      jwks: client.jwks,
      grant_types: ['client_credentials', 'authorization_code'],
      response_types: ['code'],
      redirect_uris: client.redirect_uris ?? ['http://127.0.0.1/callback'],
      id_token_signed_response_alg: 'ES256',
    },
  ],
  clientAuthMethods: ['private_key_jwt'],
  enabledJWA: {
    clientAuthSigningAlgValues: ['ES256', 'RS256', 'PS256'],
    idTokenSigningAlgValues: ['ES256', 'RS256'],
  },
  clientDefaults: { id_token_signed_response_alg: 'ES256' },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  pkce: { required: () => true }, // S256 only is the default method set
  scopes: ['openid', 'profile', 'address', 'api'],
  findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  features: {
    devInteractions: { enabled: false }, // no login UI: client_credentials needs none
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => resource,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, indicator) => {
        if (indicator !== resource) throw new errors.InvalidTarget();
        return {
          scope: 'api',
          audience: resource,
          accessTokenTTL: 600,
          accessTokenFormat: 'jwt', // RFC 9068, signed ES256 with the key above
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
  ttl: {
    AccessToken: 600,
    AuthorizationCode: 60,
    ClientCredentials: 600,
    IdToken: 600,
    Grant: 3600,
    Session: 3600,
    Interaction: 600,
  },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  renderError: async (ctx, out) => {
    ctx.type = 'json';
    ctx.body = out;
  },
};

const provider = new Provider(issuer, configuration);
provider.on('server_error', (_ctx, error) => console.error('server_error', error));

if (args['code-minting']) {
  // Codes as /authorize would issue them after a completed login and consent, minted in bulk.
  const { AuthorizationCode, Grant } = provider;
  provider.use(async (ctx, next) => {
    if (ctx.method !== 'POST' || ctx.path !== '/bench/codes') return next();
    const count = Math.min(Number.parseInt(ctx.query.count ?? '1', 10) || 1, 5_000);
    const { redirect_uri: redirectUri, code_challenge: codeChallenge } = ctx.query;
    const codes = [];
    for (let index = 0; index < count; index += 1) {
      const accountId = `bench-${crypto.randomBytes(6).toString('hex')}`;
      const grant = new Grant({ clientId: client.client_id, accountId });
      grant.addOIDCScope('openid');
      grant.addResourceScope(resource, 'api'); // so the access token is a JWT, like ours
      const grantId = await grant.save();
      const code = new AuthorizationCode({
        accountId,
        acr: 'urn:tsunagu:acr:jpki-proofed',
        amr: ['hwk', 'user', 'x509'],
        authTime: Math.floor(Date.now() / 1000),
        client: await provider.Client.find(client.client_id),
        codeChallenge,
        codeChallengeMethod: 'S256',
        grantId,
        nonce: crypto.randomBytes(8).toString('hex'),
        redirectUri,
        resource,
        scope: 'openid api',
        sessionUid: crypto.randomBytes(8).toString('hex'),
      });
      codes.push(await code.save());
    }
    ctx.body = { codes };
    return undefined;
  });
}

provider.listen(port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));

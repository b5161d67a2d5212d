// A real OpenID Connect provider for memsys's sign-in tests, on loopback only.
// node provider.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI USERS_JSON
// USERS_JSON maps a login to its claims, e.g. {"ann": {"email": "ann@example.com", "groups": ["ops"]}};
// a login that is not listed signs in as <login>@unknown.test (for "no role" tests).
// Every account's e-mail is verified (email_verified: true) unless its claims say
// "email_verified": false, or null to leave the claim out of its tokens (as some providers do).
// The sign-in form is oidc-provider's development interaction: any password is accepted.
import { readFileSync } from "node:fs";
import Provider from "oidc-provider";

const [port, clientId, clientSecret, redirectUri, usersFile] = process.argv.slice(2);
const users = JSON.parse(readFileSync(usersFile, "utf8"));

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    // Streamlit sends its redirect URI back as the post-logout address.
    post_logout_redirect_uris: [redirectUri, redirectUri.replace(/\/oauth2callback$/, "/")],
    response_types: ["code"],
    grant_types: ["authorization_code"],
  }],
  scopes: ["openid", "email", "profile", "groups"],
  claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name"], groups: ["groups"] },
  // Streamlit reads claims from the ID token only, never from userinfo.
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ["memsys-test-cookie-key"] },
  async findAccount(ctx, id) {
    const known = users[id] ?? { email: `${id}@unknown.test`, name: id, groups: [] };
    return {
      accountId: id,
      async claims() {
        const claims = { sub: id, email_verified: true, ...known };
        for (const [name, value] of Object.entries(claims)) if (value === null) delete claims[name];
        return claims;
      },
    };
  },
});
provider.listen(Number(port), "127.0.0.1", () => console.log(`oidc provider on http://127.0.0.1:${port}`));

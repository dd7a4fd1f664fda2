// JWT HS256 verification and minting, and the base64 codec under it.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth.h"
#include "base64.h"

namespace kronop::daemon {
namespace {

constexpr const char *kSecret = "kronop-test-secret";
constexpr int64_t kNow = 1'764'190'000;

// Minted by Node's crypto (createHmac("sha256", secret), base64url), independently of
// mint_token: {"sub":"alice","name":"Alïce","exp":4102444800,"nbf":1700000000,"admin":false}
constexpr const char *kNodeToken =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJhbGljZSIsIm5hbWUiOiJBbMOvY2UiLCJleHAiOjQxMDI0NDQ4MDAsIm5iZiI6MTcwMDAwMDAwMCwiYWRt"
    "aW4iOmZhbHNlfQ.bjaU50t494FpGuJ1IqxqGE5lEBzXWgfBge3Dc-Vp2H4";
// {"sub":"root-1","exp":4102444800.5,"admin":true}
constexpr const char *kNodeAdminToken =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJyb290LTEiLCJleHAiOjQxMDI0NDQ4MDAuNSwiYWRtaW4iOnRydWV9."
    "zmcrxdW8TJtDVICGIxHgrnIQo8INNxmkxAkq1spYee4";

std::string b64url(std::string_view s) { return encode_base64(s, Base64::kUrl); }

// HMAC-SHA256 computed here with OpenSSL directly, to sign tokens that mint_token would
// never write (other algorithms, odd claims).
std::string sign(std::string_view secret, std::string_view signing) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char *>(signing.data()), signing.size(), mac, &len);
  return b64url(std::string_view(reinterpret_cast<const char *>(mac), len));
}

// A token with the given header and payload JSON, signed with `secret`.
std::string forge(std::string_view header, std::string_view payload,
                  std::string_view secret = kSecret) {
  const std::string signing = b64url(header) + "." + b64url(payload);
  return signing + "." + sign(secret, signing);
}

TEST(Base64, AlphabetsAndPadding) {
  EXPECT_EQ(encode_base64("\xfb\xff", Base64::kStandard), "+/8=");
  EXPECT_EQ(encode_base64("\xfb\xff", Base64::kUrl), "-_8");
  EXPECT_EQ(decode_base64("+/8=", Base64::kStandard), std::string("\xfb\xff"));
  EXPECT_EQ(decode_base64("+/8", Base64::kStandard), std::string("\xfb\xff"));
  EXPECT_EQ(decode_base64("-_8", Base64::kUrl), std::string("\xfb\xff"));
  EXPECT_EQ(decode_base64("-_8", Base64::kEither), std::string("\xfb\xff"));
  EXPECT_EQ(decode_base64("+/8", Base64::kEither), std::string("\xfb\xff"));
  EXPECT_FALSE(decode_base64("-_8", Base64::kStandard));
  EXPECT_FALSE(decode_base64("+/8", Base64::kUrl));
  EXPECT_FALSE(decode_base64("abcde", Base64::kUrl)) << "5 characters cannot be base64";
  EXPECT_FALSE(decode_base64("ab=c", Base64::kUrl)) << "padding in the middle";
  EXPECT_EQ(decode_base64("", Base64::kUrl), std::string());
  // base64url as JWS writes it is never padded; the other two still take padding.
  EXPECT_FALSE(decode_base64("-_8=", Base64::kUrl));
  EXPECT_FALSE(decode_base64("YQ==", Base64::kUrl));
  EXPECT_EQ(decode_base64("-_8=", Base64::kEither), std::string("\xfb\xff"));
  EXPECT_EQ(decode_base64("YQ==", Base64::kStandard), std::string("a"));
}

TEST(TokenVerifier, AcceptsATokenMintedByNode) {
  TokenVerifier v(kSecret);
  Identity id;
  ASSERT_EQ(v.verify(kNodeToken, kNow, id), TokenError::kNone);
  EXPECT_EQ(id.user_id, "alice");
  EXPECT_FALSE(id.admin);
  ASSERT_EQ(v.verify(kNodeAdminToken, kNow, id), TokenError::kNone);
  EXPECT_EQ(id.user_id, "root-1");
  EXPECT_TRUE(id.admin) << "a fractional exp is accepted too";
}

TEST(TokenVerifier, MintedTokensRoundTrip) {
  TokenVerifier v(kSecret);
  Identity id;
  ASSERT_EQ(v.verify(mint_token(kSecret, "u-42", true, kNow, kNow + 60), kNow, id),
            TokenError::kNone);
  EXPECT_EQ(id.user_id, "u-42");
  EXPECT_TRUE(id.admin);
  ASSERT_EQ(v.verify(mint_token(kSecret, "u-43", false, kNow, 0), kNow, id), TokenError::kNone)
      << "a token without exp does not expire";
  EXPECT_FALSE(id.admin);
}

TEST(TokenVerifier, WrongSecretOrTamperedPartsFailTheSignature) {
  Identity id;
  TokenVerifier other("another-secret");
  EXPECT_EQ(other.verify(kNodeToken, kNow, id), TokenError::kSignature);
  EXPECT_TRUE(id.user_id.empty());

  TokenVerifier v(kSecret);
  std::string token = kNodeToken;
  // Swap the payload for one naming another user, keeping the signature.
  const auto dot1 = token.find('.'), dot2 = token.rfind('.');
  const std::string forged = token.substr(0, dot1 + 1) +
                             b64url(R"({"sub":"mallory","exp":4102444800})") + token.substr(dot2);
  EXPECT_EQ(v.verify(forged, kNow, id), TokenError::kSignature);
  // A flipped signature character.
  token.back() = token.back() == 'A' ? 'B' : 'A';
  EXPECT_EQ(v.verify(token, kNow, id), TokenError::kSignature);
}

TEST(TokenVerifier, OnlyHs256) {
  TokenVerifier v(kSecret);
  Identity id;
  const std::string payload = R"({"sub":"alice"})";
  // alg none with an empty signature: the classic forgery.
  EXPECT_EQ(v.verify(b64url(R"({"alg":"none"})") + "." + b64url(payload) + ".", kNow, id),
            TokenError::kAlgorithm);
  EXPECT_EQ(v.verify(forge(R"({"alg":"HS512"})", payload), kNow, id), TokenError::kAlgorithm);
  EXPECT_EQ(v.verify(forge(R"({"typ":"JWT"})", payload), kNow, id), TokenError::kMalformed);
  EXPECT_EQ(v.verify(forge(R"({"alg":"HS256"})", payload), kNow, id), TokenError::kNone);
}

TEST(TokenVerifier, TimeClaims) {
  TokenVerifier v(kSecret);
  Identity id;
  const std::string h = R"({"alg":"HS256"})";
  EXPECT_EQ(v.verify(forge(h, R"({"sub":"a","exp":1764190000})"), kNow, id), TokenError::kExpired)
      << "exp is exclusive";
  EXPECT_EQ(v.verify(forge(h, R"({"sub":"a","exp":1764190001})"), kNow, id), TokenError::kNone);
  EXPECT_EQ(v.verify(forge(h, R"({"sub":"a","nbf":1764190001})"), kNow, id),
            TokenError::kNotYetValid);
  EXPECT_EQ(v.verify(forge(h, R"({"sub":"a","nbf":1764190000})"), kNow, id), TokenError::kNone);
  EXPECT_EQ(v.verify(forge(h, R"({"sub":"a","exp":"soon"})"), kNow, id), TokenError::kMalformed);
}

TEST(TokenVerifier, SubjectMustNameAUser) {
  TokenVerifier v(kSecret);
  Identity id;
  const std::string h = R"({"alg":"HS256"})";
  EXPECT_EQ(v.verify(forge(h, R"({"exp":4102444800})"), kNow, id), TokenError::kSubject);
  EXPECT_EQ(v.verify(forge(h, R"({"sub":""})"), kNow, id), TokenError::kSubject);
  EXPECT_EQ(v.verify(forge(h, R"({"sub":42})"), kNow, id), TokenError::kSubject);
  EXPECT_EQ(v.verify(forge(h, R"({"sub":"a:b"})"), kNow, id), TokenError::kSubject);
  EXPECT_EQ(v.verify(forge(h, R"({"sub":"a","admin":"yes"})"), kNow, id), TokenError::kNone);
  EXPECT_FALSE(id.admin) << "only the JSON true grants admin";
}

TEST(TokenVerifier, MalformedTokens) {
  TokenVerifier v(kSecret);
  Identity id;
  for (const char *t : {"", "abc", "a.b", "a.b.c.d", "!!.e30.sig", "e30.e30.!!", "W10.e30.e30",
                        "bm90IGpzb24.e30.e30"}) {
    const TokenError e = v.verify(t, kNow, id);
    EXPECT_TRUE(e == TokenError::kMalformed || e == TokenError::kSignature) << t;
  }
  EXPECT_EQ(v.verify(std::string(10000, 'a'), kNow, id), TokenError::kMalformed);
}

// JWS compact serialization is unpadded base64url (RFC 7515 §2, §7.1): a token with '='
// in any part is not one, even when its signature is right for the bytes as sent.
TEST(TokenVerifier, PaddedPartsAreRefused) {
  TokenVerifier v(kSecret);
  Identity id;
  const std::string token = mint_token(kSecret, "alice", false, kNow, kNow + 60);
  ASSERT_EQ(v.verify(token, kNow, id), TokenError::kNone);
  // The HMAC is 32 bytes: 43 characters, and "=" would pad them to 44.
  EXPECT_EQ(v.verify(token + "=", kNow, id), TokenError::kMalformed);
  EXPECT_TRUE(id.user_id.empty());
  // A header or payload of 16 bytes pads with "==", signed as sent (padding included):
  // refused all the same, and accepted unpadded.
  const std::string header = b64url(R"({"alg":"HS256" })");
  const std::string payload = b64url(R"({"sub":"alice1"})");
  ASSERT_EQ(header.size() % 4, 2u);
  ASSERT_EQ(payload.size() % 4, 2u);
  auto signed_token = [](const std::string &h, const std::string &p) {
    return h + "." + p + "." + sign(kSecret, h + "." + p);
  };
  ASSERT_EQ(v.verify(signed_token(header, payload), kNow, id), TokenError::kNone);
  EXPECT_EQ(v.verify(signed_token(header + "==", payload), kNow, id), TokenError::kMalformed);
  EXPECT_EQ(v.verify(signed_token(header, payload + "=="), kNow, id), TokenError::kMalformed);
}

TEST(TokenVerifier, NoSecretRefusesEverything) {
  TokenVerifier v("");
  Identity id;
  EXPECT_EQ(v.verify(kNodeToken, kNow, id), TokenError::kNoSecret);
  EXPECT_STRNE(token_error_message(TokenError::kNoSecret), "");
}

}  // namespace
}  // namespace kronop::daemon

#include "proto/api/tls_files.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "base/annotate.h"
#include "base/file.h"

namespace care::api {

namespace {

absl::StatusOr<std::string> ReadText(const std::string& path,
                                     absl::string_view flag) {
  absl::StatusOr<std::string> text = care::ReadFileToString(path);
  if (!text.ok()) return care::Annotate(text.status(), flag);
  return text;
}

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

std::unique_ptr<BIO, BioFree> Bio(const std::string& text) {
  return std::unique_ptr<BIO, BioFree>(
      BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

// Certificates in `pem` (0 when the first block does not parse).
int CountCertificates(const std::string& pem) {
  auto bio = Bio(pem);
  int n = 0;
  while (true) {
    std::unique_ptr<X509, X509Free> cert(
        PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!cert) break;
    ++n;
  }
  ERR_clear_error();  // The end of the input reads as an error.
  return n;
}

}  // namespace

absl::StatusOr<std::string> ReadCaCertificates(const std::string& path,
                                               absl::string_view flag) {
  absl::StatusOr<std::string> pem = ReadText(path, flag);
  if (!pem.ok()) return pem.status();
  if (CountCertificates(*pem) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": ", path,
                     " holds no PEM certificate (expected \"-----BEGIN "
                     "CERTIFICATE-----\" blocks)"));
  }
  return pem;
}

absl::StatusOr<KeyPair> ReadKeyPair(const std::string& cert_path,
                                    const std::string& key_path) {
  KeyPair pair;
  absl::StatusOr<std::string> cert = ReadText(cert_path, "--tls-cert");
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadText(key_path, "--tls-key");
  if (!key.ok()) return key.status();
  auto cert_bio = Bio(*cert);
  std::unique_ptr<X509, X509Free> x509(
      PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
  if (!x509) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-cert: ", cert_path, " holds no PEM certificate"));
  }
  auto key_bio = Bio(*key);
  std::unique_ptr<EVP_PKEY, KeyFree> pkey(
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (!pkey) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls-key: ", key_path, " holds no unencrypted PEM private key"));
  }
  if (X509_check_private_key(x509.get(), pkey.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-key: the key in ", key_path,
                     " does not belong to the certificate in ", cert_path));
  }
  pair.cert_pem = *std::move(cert);
  pair.key_pem = *std::move(key);
  return pair;
}

}  // namespace care::api

#!/usr/bin/perl

# The OCI 1.1 referrers API: GET /v2/<name>/referrers/<digest> answers an
# image index of the artifacts whose subject is that manifest. From an
# upstream with the API, its index (filtered by ?artifactType=, said in
# OCI-Filters-Applied); from one without it, the index of the referrers tag
# schema's tag sha256-<hex>; from one with neither (Debian's
# docker-registry), or none reachable, an empty index, never an error. The
# artifacts (a signature manifest with a subject, its blobs) pull through
# like images.

use strict;
use warnings;

use Test::More;
use Digest::SHA qw(sha256_hex);
use JSON::PP;

use PT::Nginx;
use PT::Pulp;
use PT::Registry;
use PT::Images;
use PT::Pull;
use PT::FakeUpstream;
use PT::Util qw(need_tools);

need_tools(qw(docker-registry skopeo openssl));

my $JSON = JSON::PP->new->utf8->canonical;
my $INDEX = 'application/vnd.oci.image.index.v1+json';
my $SIG = 'application/vnd.dev.cosign.artifact.sig.v1+json';
my $SBOM = 'application/spdx+json';

sub digest_of { 'sha256:' . sha256_hex($_[0]) }

# a signature artifact of a subject: its config (empty), its payload, its
# manifest
my $subject = digest_of('an image manifest');
my $empty = '{}';
my $payload = '{"critical":{"image":{"docker-manifest-digest":"' . $subject . '"}}}';
my $sig = $JSON->encode({
    schemaVersion => 2,
    mediaType => 'application/vnd.oci.image.manifest.v1+json',
    artifactType => $SIG,
    config => { mediaType => 'application/vnd.oci.empty.v1+json', digest => digest_of($empty), size => 2 },
    layers => [ { mediaType => 'application/vnd.dev.cosign.simplesigning.v1+json',
                  digest => digest_of($payload), size => length $payload } ],
    subject => { mediaType => 'application/vnd.oci.image.manifest.v1+json', digest => $subject, size => 17 },
});
my $index = $JSON->encode({
    schemaVersion => 2, mediaType => $INDEX,
    manifests => [
        { mediaType => 'application/vnd.oci.image.manifest.v1+json', digest => digest_of($sig),
          size => length $sig, artifactType => $SIG },
        { mediaType => 'application/vnd.oci.image.manifest.v1+json', digest => digest_of('an sbom'),
          size => 7, artifactType => $SBOM, annotations => { 'org.example' => 'x' } },
    ],
});
(my $tag = $subject) =~ s/:/-/;

# an upstream with the referrers API, one with the tag schema only, a real
# one with neither
my $api = PT::FakeUpstream->new(
    blobs => { digest_of($sig) => $sig, digest_of($empty) => $empty, digest_of($payload) => $payload },
    hook => sub {
        my ($req) = @_;
        return undef unless $req->{path} =~ m{^/v2/library/signed/referrers/(\S+)$};
        return [ 200, [ 'Content-Type' => $INDEX ], $1 eq $subject ? $index
                        : $JSON->encode({ schemaVersion => 2, mediaType => $INDEX, manifests => [] }) ];
    })->start;
my $tagged = PT::FakeUpstream->new(
    tags => { "library/signed:$tag" => digest_of($index) },
    blobs => { digest_of($index) => $index })->start;
my $reg = PT::Registry->new->start;
my $hello = PT::Images::seed($reg, 'hello')->{'library/hello:1.0'};

my $t = PT::Nginx->new(conf => cache_conf())->start;
setup_cache($t, $api->url, base_path => 'api', name => 'api');
setup_cache($t, $tagged->url, base_path => 'tagged', name => 'tagged');
setup_cache($t, $reg->url, base_path => 'real', name => 'real');
setup_cache($t, $api->url, base_path => 'now', name => 'now', remote => { tag_ttl => 0 });

sub referrers {
    my ($path) = @_;
    my $r = $t->get($path);
    return ($r, [ map { $_->{artifactType} } @{ $r->{json}{manifests} || [] } ]);
}


# the upstream's own API

my ($r, $types) = referrers("/v2/api/library/signed/referrers/$subject");
is($r->{status}, 200, 'referrers from an upstream with the API: 200');
like($r->{headers}{'content-type'}, qr/^\Q$INDEX\E/, '... an image index');
is_deeply([ $r->{json}{schemaVersion}, $r->{json}{mediaType} ], [ 2, $INDEX ], '... schemaVersion 2, its mediaType');
is_deeply($types, [ $SIG, $SBOM ], '... both referrers');
is($r->{json}{manifests}[1]{annotations}{'org.example'}, 'x', '... descriptors as the upstream sent them');
is($r->{headers}{'oci-filters-applied'}, undef, '... no filter applied');

($r, $types) = referrers("/v2/api/library/signed/referrers/$subject?artifactType=application%2Fspdx%2Bjson");
is_deeply($types, [ $SBOM ], '?artifactType=: the descriptors of that type');
is($r->{headers}{'oci-filters-applied'}, 'artifactType', '... said in OCI-Filters-Applied');

$api->reset_requests;
($r, $types) = referrers("/v2/api/library/signed/referrers/$subject");
is_deeply($types, [ $SIG, $SBOM ], 'again within the freshness period: the same index');
is(scalar($api->requests), 0, '... from the store, the upstream not asked');

($r, $types) = referrers("/v2/api/library/signed/referrers/" . digest_of('nothing'));
is_deeply([ $r->{status}, $types ], [ 200, [] ], 'nothing refers to it: an empty index');

# the artifact pulls through like an image
$r = $t->get("/v2/api/library/signed/manifests/" . digest_of($sig),
             headers => { Accept => 'application/vnd.oci.image.manifest.v1+json' });
is_deeply([ $r->{status}, $r->{headers}{'docker-content-digest'} ], [ 200, digest_of($sig) ],
          'the signature manifest (artifactType, subject) pulls through');
is($r->{content}, $sig, '... its bytes as the upstream has them');
$r = $t->get("/v2/api/library/signed/blobs/" . digest_of($payload));
is_deeply([ $r->{status}, $r->{content} ], [ 200, $payload ], '... and its signature blob');


# the referrers tag schema

$tagged->reset_requests;
($r, $types) = referrers("/v2/tagged/library/signed/referrers/$subject");
is_deeply([ $r->{status}, $types ], [ 200, [ $SIG, $SBOM ] ],
          'an upstream without the API: the index of the tag ' . $tag);
is_deeply([ map { "$_->{method} $_->{path}" } $tagged->requests ],
          [ "GET /v2/library/signed/referrers/$subject", "GET /v2/library/signed/manifests/$tag" ],
          '... asked after the API answered 404');
($r, $types) = referrers("/v2/tagged/library/signed/referrers/$subject?artifactType=" . $SIG);
is_deeply($types, [ $SIG ], '... filtered too');


# neither: an empty index, never an error

($r, $types) = referrers("/v2/real/library/hello/referrers/$hello->{digest}");
is_deeply([ $r->{status}, $types ], [ 200, [] ], 'docker-registry (neither): an empty index');
is_oci_error($t->get("/v2/real/library/hello/referrers/sha256:abc"), 400, 'DIGEST_INVALID',
             'a malformed digest: 400 DIGEST_INVALID');

# tag_ttl 0: asked every time; the upstream down, what it said before
$api->reset_requests;
($r, $types) = referrers("/v2/now/library/signed/referrers/$subject");
is_deeply($types, [ $SIG, $SBOM ], 'a remote with tag_ttl 0: the index');
($r, $types) = referrers("/v2/now/library/signed/referrers/$subject");
is(scalar($api->requests), 2, '... asked at each request');

$api->stop;
($r, $types) = referrers("/v2/now/library/signed/referrers/$subject");
is_deeply([ $r->{status}, $types ], [ 200, [ $SIG, $SBOM ] ], 'the upstream down: the stored index');
like($t->error_log, qr/\[warn\].*referrers of \Q$subject\E in "now\/library\/signed" could not be asked for: the stored index/,
     '... and a warning');
my $other = digest_of('never asked');
($r, $types) = referrers("/v2/now/library/signed/referrers/$other");
is_deeply([ $r->{status}, $types ], [ 200, [] ], '... and for a subject never asked: an empty index');
like($t->error_log, qr/\[warn\].*referrers of \Q$other\E .* an empty index is answered/, '... and a warning');

$t->stop;

done_testing;

#!/usr/bin/perl

# Pulling through the cache with real clients: skopeo (to dir: and oci:)
# and podman pull every test image set from a real upstream registry through
# nginx, and get exactly what was pushed; pulling again makes no upstream
# request at all.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use JSON::PP;
use Time::HiRes qw(time);

use PT::Nginx;
use PT::Pulp;
use PT::Registry;
use PT::Images;
use PT::Pull;
use PT::Util qw(need_tools missing_tools);

need_tools(qw(docker-registry skopeo openssl));

my %MT = %PT::Images::MT;
my $JSON = JSON::PP->new->utf8;
my $tmp = tempdir('pt-100-XXXXXXXX', TMPDIR => 1, CLEANUP => !$ENV{PT_KEEP});
my $t0 = time;

my $reg = PT::Registry->new->start;
my $img = PT::Images::seed($reg, qw(hello app multi big));
note(sprintf 'upstream seeded in %.1f s', time - $t0);

my $t = PT::Nginx->new(conf => cache_conf());
$t->start;
setup_cache($t, $reg->url);

# a pull of these images takes a few seconds at most
$PT::Pull::CMD_TIMEOUT = 45;

# podman is optional: without it, its pulls are skipped
my $no_podman = missing_tools('podman');


# what a client got, checked against what was seeded

sub is_list { $_[0]{media_type} eq $MT{oci_index} || $_[0]{media_type} eq $MT{v2_list} }

sub is_oci { $_[0]{media_type} =~ /^application\/vnd\.oci\./ }

# the images (not lists) of a seeded reference: ($info) or its children
sub images_of {
    my ($i) = @_;
    return is_list($i) ? map { $i->{children}{$_} } sort keys %{ $i->{children} }
                       : ($i);
}

# skopeo dir: has manifest.json (the manifest or list, byte for byte), the
# children's manifests as <hex>.manifest.json, and every blob as <hex>
sub check_dir {
    my ($dir, $ref, $what) = @_;
    my $i = $img->{$ref};

    is(file_digest("$dir/manifest.json"), $i->{digest},
       "$what: manifest.json is the upstream manifest, byte for byte");

    for my $c (images_of($i)) {
        if (is_list($i)) {
            my $f = "$dir/" . substr($c->{digest}, 7) . '.manifest.json';
            is(-f $f ? file_digest($f) : 'missing', $c->{digest},
               "$what: child manifest $c->{platform}");
        }
        for my $d ($c->{config}, @{ $c->{layers} }) {
            my $f = "$dir/" . substr($d, 7);
            is(-f $f ? file_digest($f) : 'missing', $d, "$what: blob $d");
        }
    }
}

# skopeo oci: every blob file matches its name; OCI content is kept as is
# (--preserve-digests); Docker content is converted by skopeo, which keeps
# the layers
sub check_oci {
    my ($dir, $ref, $what) = @_;
    my $i = $img->{$ref};

    my $index = eval { $JSON->decode(PT::Util::slurp("$dir/index.json")) };
    my @m = $index ? @{ $index->{manifests} } : ();
    is(scalar @m, 1, "$what: one image in index.json");

    opendir my $dh, "$dir/blobs/sha256" or die "$dir/blobs/sha256: $!";
    my @files = grep { !/^\./ } readdir $dh;
    closedir $dh;
    my @bad = grep { file_digest("$dir/blobs/sha256/$_") ne "sha256:$_" } @files;
    is_deeply(\@bad, [], "$what: every blob file matches its digest");
    my %have = map { ("sha256:$_" => 1) } @files;

    if (is_oci($i)) {
        is($m[0]{digest}, $i->{digest}, "$what: the upstream manifest digest");
        for my $c (images_of($i)) {
            ok($have{ $c->{digest} }, "$what: child $c->{platform}")
                if is_list($i);
            ok($have{$_}, "$what: blob $_") for $c->{config}, @{ $c->{layers} };
        }
    } else {
        ok($have{$_}, "$what: layer $_") for map { @{ $_->{layers} } } images_of($i);
    }
}

# podman: the image (or for a list the linux/amd64 image) with the
# upstream digest and the layers' diff_ids
sub check_podman {
    my ($pdir, $ref, $what) = @_;
    my $i = $img->{$ref};
    my ($rc, $out) = podman($pdir, 'image', 'inspect', cache_ref($t, $ref));
    my $j = eval { $JSON->decode($out) };
    ok(!$rc && $j, "$what: podman image inspect") or diag($out), return;
    my $c = is_list($i) ? $i->{children}{'linux/amd64'} : $i;
    is($j->[0]{Digest}, $i->{digest}, "$what: digest as upstream");
    is_deeply($j->[0]{RootFS}{Layers}, $c->{diff_ids}, "$what: layers (diff_ids)");
    ok(scalar(grep { $_ eq "@{[ cache_ref($t, $ref) =~ s/:[^:\/]+$//r ]}\@$i->{digest}" }
              @{ $j->[0]{RepoDigests} || [] }), "$what: RepoDigests");
}

my $n = 0;

sub pull_dir {
    my ($ref, $src) = @_;
    my $dir = "$tmp/dir-" . ++$n;
    my @all = is_list($img->{$ref}) ? ('--all') : ();
    my ($rc, $out) = skopeo('copy', '--quiet', @all, '--src-tls-verify=false',
                            'docker://' . ($src // cache_ref($t, $ref)),
                            "dir:$dir");
    is($rc, 0, "skopeo copy $ref to dir:") or diag($out), return;
    check_dir($dir, $ref, "dir: $ref");
}

sub pull_oci {
    my ($ref) = @_;
    my $dir = "$tmp/oci-" . ++$n;
    my $i = $img->{$ref};
    my @o = ('--dest-oci-accept-uncompressed-layers');
    push @o, '--all' if is_list($i);
    push @o, '--preserve-digests' if is_oci($i);
    my ($rc, $out) = skopeo('copy', '--quiet', @o, '--src-tls-verify=false',
                            'docker://' . cache_ref($t, $ref), "oci:$dir:t");
    is($rc, 0, "skopeo copy $ref to oci:") or diag($out), return;
    check_oci($dir, $ref, "oci: $ref");
}

sub pull_podman {
    my ($ref, $pdir) = @_;
    SKIP: {
        skip $no_podman, 1 if $no_podman;
        my ($rc, $out) = podman($pdir, 'pull', '--quiet', '--tls-verify=false',
                                cache_ref($t, $ref));
        is($rc, 0, "podman pull $ref") or diag($out), return;
        check_podman($pdir, $ref, "podman $ref");
    }
}


# cold: each image first pulled by one of the clients, which fills the cache

my %first = (
    'library/hello:1.0' => 'dir',
    'library/multi:1.0' => 'dir',
    'library/big:1.0'   => 'dir',
    'team/app:1.0'      => 'oci',
    'team/multi:1.0'    => 'oci',
    'library/hello:1.1' => 'podman',
    'team/app:1.1'      => 'podman',
);
my @refs = sort keys %first;

for my $ref (@refs) {
    my $mark = cache_log_mark($t);
    $reg->reset_requests;
    my $t1 = time;

    my $c = $first{$ref};
    # without podman its cold pulls go through skopeo: the checks below
    # need the cache filled all the same
    $c = 'dir' if $c eq 'podman' && $no_podman;
    $c eq 'dir' ? pull_dir($ref) : $c eq 'oci' ? pull_oci($ref)
                : pull_podman($ref, "$tmp/podman-cold-" . ++$n);
    note(sprintf '%s cold through %s in %.2f s', $ref, $c, time - $t1);

    my @up = $reg->requests;
    ok(scalar(grep { $_->{path} =~ m{/manifests/} } @up),
       "$ref: the cold pull fetched its manifest upstream");
    my ($repo, $tag) = split /:/, $ref;
    my $m = wait_cache_log($t, $mark, 'GET', qr{^/v2/cache/\Q$repo\E/manifests/\Q$tag\E$});
    is($m && $m->{cache}, 'MISS', "$ref: the manifest was a MISS");
}


# warm: every image through every client, and by digest: nothing upstream

$reg->reset_requests;
my $mark = cache_log_mark($t);
for my $ref (@refs) {
    pull_dir($ref);
    pull_oci($ref);
    pull_podman($ref, "$tmp/podman-warm-" . ++$n);
}

for my $ref (qw(library/hello:1.0 team/multi:1.0)) {
    my ($repo) = $ref =~ /^(.+):/;
    pull_dir($ref, cache_ref($t, "$repo\@$img->{$ref}{digest}"));
}

my @up = $reg->requests;
is(scalar @up, 0, 'second pulls: zero upstream requests')
    or diag(join "\n", map { "$_->{method} $_->{uri} $_->{status}" } @up);

wait_for(sub { cache_log_mark($t) > $mark });
my @log = grep { $_->{path} =~ m{^/v2/cache/} } cache_log($t, $mark);
ok(scalar @log > 50, 'second pulls: requests logged (' . scalar(@log) . ')');
is_deeply([ grep { $_->{cache} ne 'HIT' || $_->{status} != 200 } @log ], [],
          'second pulls: every registry request a 200 HIT');


# a new tag for cached content: only its manifest goes upstream

$reg->reset_requests;
pull_dir('library/hello:latest');
is_deeply([ map { "$_->{method} $_->{path}" } $reg->requests ],
          [ 'GET /v2/library/hello/manifests/latest' ],
          'hello:latest (= 1.1, cached): only the manifest upstream');


# the store holds each blob once, by digest

{
    my %want;
    for my $ref (keys %$img) {
        for my $c (images_of($img->{$ref})) {
            $want{$_} = 1 for $c->{config}, @{ $c->{layers} };
            $want{ $c->{digest} } = 1;
        }
        $want{ $img->{$ref}{digest} } = 1;
    }
    my @files = store_files($t);
    my @bad = grep { my ($h) = m{/([0-9a-f]+)$}; file_digest($t->store . "/blobs/$_") ne "sha256:$h" } @files;
    is_deeply(\@bad, [], 'every stored file matches its digest');
    my @missing = grep { !-f blob_file($t, $_) } sort keys %want;
    is_deeply(\@missing, [], 'every blob and manifest pulled is in the store');
    is_deeply([ tmp_files($t) ], [], 'no temp file left');
}

$t->stop;
$reg->stop;
note(sprintf 'total %.1f s', time - $t0);

done_testing;

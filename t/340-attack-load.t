#!/usr/bin/perl

# Load as an attacker would bring it, on two workers: 150 clients at once
# on one cold blob and on one cold tag cost one upstream GET each and all
# get the whole, verified content; a loop of clients pulling a tag that
# does not exist costs one upstream request per pullthrough_negative_ttl;
# admin lists keep answering meanwhile; nothing is left behind.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use POSIX ();
use Time::HiRes qw(time);

use PT::Nginx;
use PT::Pulp;
use PT::Registry;
use PT::Images;
use PT::Pull;
use PT::Util qw(need_tools spew run_output);

need_tools(qw(docker-registry skopeo openssl curl));

my $tmp = tempdir('pt-340-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
my $reg = PT::Registry->new->start;
my $img = PT::Images::seed($reg, qw(hello));
my $i10 = $img->{'library/hello:1.0'};
my $blob = $i10->{layers}[1];                                  # 3 MiB

my $t = PT::Nginx->new(conf => cache_conf(workers => 2,
                                          main => "events { worker_connections 1024; }\n"));
$t->start;
setup_cache($t, $reg->url);

# n requests to one URL, all opened at once: "<status> <bytes>" each
sub burst {
    my ($n, $path, @h) = @_;
    my $cfg = "$tmp/burst-" . rand();
    spew($cfg, join '', map { "url = \"" . $t->base_url . "$path?c=$_\"\noutput = \"/dev/null\"\n" } 1 .. $n);
    my $out = run_output('curl', '-s', '--no-progress-meter', '-Z', '--parallel-immediate',
                         '--parallel-max', $n, (map { ('-H', $_) } @h),
                         '-w', '%{http_code} %{size_download}\n', '-K', $cfg);
    return [ split /\n/, $out ];
}

sub upstream_matching {
    my ($re) = @_;
    return scalar grep { $_->{path} =~ $re } $reg->requests;
}

$reg->reset_requests;
my $res = burst(150, "/v2/cache/library/hello/blobs/$blob");
my %sizes;
$sizes{ (split / /)[1] }++ for grep { /^200 / } @$res;
is(scalar(grep { /^200 / } @$res), 150, '150 clients at once on a cold 3 MiB blob: all 200');
is(scalar(keys %sizes), 1, '... all the same number of bytes');
is((keys %sizes)[0], -s blob_file($t, $blob), '... the whole blob');
is(file_digest(blob_file($t, $blob)), $blob, '... stored and verified');
is(upstream_matching(qr{/blobs/\Q$blob\E$}), 1, '... from one upstream GET');

$reg->reset_requests;
$res = burst(150, '/v2/cache/library/hello/manifests/1.0', "Accept: $PT::Images::ACCEPT");
is(scalar(grep { /^200 / } @$res), 150, '150 clients at once on a cold tag: all 200');
is(upstream_matching(qr{/manifests/1\.0$}), 1, '... from one upstream GET');

$reg->reset_requests;
my $t0 = time;
my $n = 0;
while (time - $t0 < 2) {
    $res = burst(20, '/v2/cache/library/hello/manifests/nothere');
    $n += grep { /^404 / } @$res;
}
my $asked = upstream_matching(qr{/manifests/nothere$});
ok($n >= 100, "a loop of clients on a missing tag: $n answers of 404");
ok($asked >= 1 && $asked <= 2 * 2 * 3,
   "... costing $asked upstream requests (one per pullthrough_negative_ttl per worker at most)");

# lists answer while clients pull
my $pid = fork // die;
if ($pid == 0) {
    burst(100, "/v2/cache/library/hello/blobs/$i10->{layers}[0]");
    POSIX::_exit(0);
}
my $ok = 0;
for (1 .. 20) {
    $ok++ if $t->get("$API/repositories/container/container/")->{status} == 200;
}
waitpid($pid, 0);
is($ok, 20, 'admin lists answer during a burst of pulls');

is_deeply([ grep { !/\.lock$/ } tmp_files($t) ], [], 'no temp file is left');

$t->stop;
$t->check_error_log;

done_testing;

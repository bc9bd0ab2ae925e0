#!/usr/bin/perl

# The metadata store full while a pull records a manifest: the client gets
# the registry's own error, OCI error JSON with a 500 (not nginx's HTML
# page), nothing is served as a hit that was not recorded, other requests
# are answered, and once there is room again (a larger map_size taken on
# reload) the same pull succeeds.

use strict;
use warnings;

use Test::More;

use PT::Nginx;
use PT::Pulp;
use PT::Registry;
use PT::Images;
use PT::Pull;
use PT::Util qw(need_tools);

need_tools(qw(docker-registry skopeo));

my $reg = PT::Registry->new->start;
my $img = PT::Images::seed($reg, qw(hello));
my $i = $img->{'library/hello:1.1'};

my $t = PT::Nginx->new(conf => cache_conf(store_args => ' map_size=1m'))->start;
$t->allow_log(qr/MDB_MAP_FULL/);
setup_cache($t, $reg->url);

# the store filled with remotes, until a write fails
my $pad = 'x' x 1000;
my ($r, @made);
for my $n (1 .. 2000) {
    $r = $t->post($REMOTES, { name => "pad$n", url => 'https://x.example', pulp_labels => { pad => $pad } });
    last unless $r->{status} == 201;
    push @made, $r->{json}{pulp_href};
}
is($r->{status}, 500, 'the store is full') or diag(dump_json($r));

my $path = '/v2/cache/library/hello/manifests/1.1';
for my $try (1, 2) {
    $r = http_get($t, $path);
    is_oci_error($r, 500, 'UNKNOWN', "full store, pull $try: OCI error JSON, 500");
    unlike($r->{body} // '', qr/<html/i, "full store, pull $try: not nginx's HTML page");
    is($r->{headers}{'docker-content-digest'}, undef, "full store, pull $try: no digest announced");
}

$r = http_get($t, '/v2/cache/library/hello/tags/list');
is_oci_error($r, 404, 'NAME_UNKNOWN', 'nothing recorded: the repository is not known');
is(http_get($t, '/v2/')->{status}, 200, 'the registry still answers');

# room again (a full LMDB map cannot even delete: it copies pages on
# write), with a larger map_size: the same pull is a miss that records
$t->set_conf(cache_conf(store_args => ' map_size=8m'));
$t->reload;
$r = http_get($t, $path);
is($r->{status}, 200, 'reload with map_size=8m: the manifest is served');
is($r->{headers}{'docker-content-digest'}, $i->{digest}, '... the one upstream has');
$r = http_get($t, '/v2/cache/library/hello/tags/list');
is_deeply($r->{json}{tags}, ['1.1'], '... and its tag is recorded');

$t->stop;
done_testing;

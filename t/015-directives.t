#!/usr/bin/perl

# The module's directives refuse what they cannot take: "nginx -t" fails
# with an [emerg] naming the directive and the value, and the same
# configuration with a sane value passes. pullthrough_zone sizes the
# zone the workers share; the smallest size allowed works.

use strict;
use warnings;

use Test::More;
use PT::Nginx;
use PT::Pulp;

my $t = PT::Nginx->new(conf => admin_conf());

# each: a configuration change, and what nginx -t must say of it
my @bad = (
    [ 'pullthrough_zone too small', { http => 'pullthrough_zone 16k;' },
      qr/\[emerg\].*zone size "16k" is too small: the shared state of workers needs at least 32k/ ],
    [ 'pullthrough_zone not a size', { http => 'pullthrough_zone lots;' },
      qr/\[emerg\].*invalid zone size "lots"/ ],
    [ 'pullthrough_zone twice', { http => 'pullthrough_zone 1m; pullthrough_zone 2m;' },
      qr/\[emerg\].*"pullthrough_zone" directive is duplicate/ ],
    [ 'map_size too small', { store_args => ' map_size=100k' },
      qr/\[emerg\].*invalid map_size "100k", it must be at least 1m/ ],
    [ 'pullthrough_store parameter unknown', { store_args => ' max_sise=1g' },
      qr/\[emerg\].*invalid parameter "max_sise=1g"/ ],
    [ 'pullthrough_store max_size not a size', { store_args => ' max_size=lots' },
      qr/\[emerg\].*invalid value "max_size=lots" of "pullthrough_store"/ ],
    [ 'pullthrough_store inactive not a time', { store_args => ' inactive=1x' },
      qr/\[emerg\].*invalid value "inactive=1x" of "pullthrough_store"/ ],
    [ 'pullthrough_store inactive zero', { store_args => ' inactive=0' },
      qr/\[emerg\].*invalid value "inactive=0" of "pullthrough_store"/ ],
    [ 'pullthrough_metrics with pullthrough_admin',
      { server => 'location /m/ { pullthrough_metrics; pullthrough_admin; }' },
      qr/\[emerg\].*"pullthrough_admin" directive cannot be in the location of "pullthrough_metrics"/ ],
    [ 'pullthrough_metrics twice',
      { server => 'location /m/ { pullthrough_metrics; pullthrough_metrics; }' },
      qr/\[emerg\].*"pullthrough_metrics" directive is duplicate/ ],
    [ 'pullthrough_store manager_files zero', { store_args => ' manager_files=0' },
      qr/\[emerg\].*invalid value "manager_files=0" of "pullthrough_store"/ ],
    [ 'pullthrough_manifest_max_size too small', { location => 'pullthrough_manifest_max_size 100;' },
      qr/\[emerg\].*"pullthrough_manifest_max_size" must be at least 1k/ ],
    [ 'pullthrough_fill_buffer_size too small', { http => 'pullthrough_fill_buffer_size 1k;' },
      qr/\[emerg\].*"pullthrough_fill_buffer_size" must be at least 4k/ ],
    [ 'pullthrough_registry outside a prefix location',
      { server => 'location = /v3/ { pullthrough_registry; }' },
      qr/\[emerg\].*must be in a prefix location ending with "\/"/ ],
    [ 'pullthrough_registry with an unknown parameter',
      { server => 'location /v3/ { pullthrough_registry hub; }' },
      qr/\[emerg\].*invalid parameter "hub": expected "default=<base_path>"/ ],
    [ 'pullthrough_registry default= with a slash',
      { server => 'location /v3/ { pullthrough_registry default=/hub; }' },
      qr/\[emerg\].*invalid parameter "default=\/hub": a base_path has no leading or trailing "\/"/ ],
    [ 'pullthrough_registry default= empty',
      { server => 'location /v3/ { pullthrough_registry default=; }' },
      qr/\[emerg\].*invalid parameter "default=": expected "default=<base_path>"/ ],
);

for my $case (@bad) {
    my ($name, $conf, $re) = @$case;
    $t->set_conf(admin_conf(%$conf));
    my ($status, $out) = $t->test_conf;
    isnt($status, 0, "$name: nginx -t fails");
    like($out, $re, "$name: and says why") or diag($out);
}

# the smallest zone: nginx starts, the admin API and the registry answer
$t->set_conf(admin_conf(workers => 2, http => 'pullthrough_zone 32k;'));
my ($status, $out) = $t->test_conf;
is($status, 0, 'pullthrough_zone 32k: nginx -t passes') or diag($out);

$t->start;
is($t->post($REMOTES, { name => 'r', url => 'https://x.example' })->{status}, 201,
   'pullthrough_zone 32k: the admin API works');
is($t->get('/v2/')->{status}, 200, 'pullthrough_zone 32k: the registry answers');

# a reload to another size starts a new zone: workers still answer
$t->set_conf(admin_conf(workers => 2, http => 'pullthrough_zone 2m;'));
$t->reload;
is($t->get('/v2/')->{status}, 200, 'reload with pullthrough_zone 2m: the registry answers');
$t->stop;

done_testing;

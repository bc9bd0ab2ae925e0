#!/usr/bin/perl

# Whole-index versions, as Pulp makes them: pulling a tag that names an
# image index (or a Docker manifest list) records the index and every
# manifest it lists in one repository version, fetched after the answer
# (their layers are not); a client asking for a listed manifest meanwhile
# waits for that fetch instead of making its own. Pulling a second image
# then makes exactly one more version; pulling the platforms of an image
# already recorded makes none.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);

use PT::Nginx;
use PT::Pulp;
use PT::Registry;
use PT::Images;
use PT::Pull;
use PT::Util qw(need_tools missing_tools);

need_tools(qw(docker-registry skopeo openssl));

my $ACCEPT = $PT::Images::ACCEPT;
my $tmp = tempdir('pt-170-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

my $reg = PT::Registry->new->start;
my $img = PT::Images::seed($reg, qw(hello multi));
# a second index in library/multi: the Docker manifest list of team/multi
PT::Images::retag($reg, 'team/multi:1.0', 'library/multi:v2s2');
my $second = PT::Images::read_back($reg, 'library/multi:v2s2');

my $t = PT::Nginx->new(conf => cache_conf(workers => 2));
$t->start;
setup_cache($t, $reg->url);

my $index = $img->{'library/multi:1.0'};
my @children = sort map { $_->{digest} } values %{ $index->{children} };

sub repo {
    my ($r) = grep { $_->{name} eq 'cache/library/multi' }
              @{ list_all($t, "$API/repositories/container/container/") };
    return $r;
}

sub version_number { my $r = repo() or return -1; ($r->{latest_version_href} =~ m{/versions/(\d+)/$})[0] }

sub content {
    my ($kind) = @_;
    my $v = repo()->{latest_version_href};
    return [ sort map { $_->{digest} // $_->{name} }
             @{ list_all($t, "$API/content/container/$kind/?repository_version=$v") } ];
}

sub upstream_manifests {
    my @r = grep { $_->{path} =~ m{/manifests/} } $reg->requests;
    return [ map { "$_->{method} $_->{path}" } @r ];
}

$reg->reset_requests;
my $r = $t->get('/v2/cache/library/multi/manifests/1.0', headers => { Accept => $ACCEPT });
is_deeply([ $r->{status}, $r->{headers}{'docker-content-digest'} ], [ 200, $index->{digest} ],
          'the index of library/multi:1.0, by tag');

ok(wait_for(sub { version_number() == 1 }, 10),
   'one version after the manifests it lists are fetched')
    or diag('version ' . version_number());
is_deeply(content('manifests'), [ sort $index->{digest}, @children ],
          '... holding the index and every manifest it lists');
is_deeply(content('tags'), ['1.0'], '... and the tag');
my @layers = map { @{ $_->{layers} } } values %{ $index->{children} };
my %blobs = map { $_ => 1 } @layers, map { $_->{config} } values %{ $index->{children} };
is_deeply(content('blobs'), [ sort keys %blobs ], '... and the blobs those manifests name');
is_deeply([ sort @{ upstream_manifests() } ],
          [ sort 'GET /v2/library/multi/manifests/1.0',
                 map { "GET /v2/library/multi/manifests/$_" } @children ],
          '... the listed manifests fetched once each, no layer fetched');
is(scalar(grep { $_->{path} =~ m{/blobs/} } $reg->requests), 0, '... no blob fetched');

$reg->reset_requests;
my ($rc, $out) = skopeo({ timeout => 60 }, 'copy', '--quiet', '--all', '--src-tls-verify=false',
                        'docker://' . cache_ref($t, 'library/multi:1.0'), "dir:$tmp/all");
is($rc, 0, 'skopeo copies every platform of the image') or diag($out);
is(version_number(), 1, '... no new version');
is_deeply([ grep { m{/manifests/} } @{ upstream_manifests() } ], [],
          '... its manifests all cached');

$r = $t->get('/v2/cache/library/multi/manifests/v2s2', headers => { Accept => $ACCEPT });
is($r->{status}, 200, 'a second image: its manifest list');
my @second = sort map { $_->{digest} } values %{ $second->{children} || {} };
ok(@second == 2, '... which lists two manifests');
ok(wait_for(sub { version_number() == 2 }, 10), '... exactly one more version');
ok(wait_for(sub { @{ content('manifests') } == 3 + 3 }, 10),
   '... holding both images and all their manifests');
is(version_number(), 2, '... still version 2');

# a client asking for a listed manifest while it is fetched waits for it
my $big = PT::Images::retag($reg, 'library/multi:1.0', 'library/multi:again');
$reg->reset_requests;
$r = $t->get('/v2/cache/library/multi/manifests/again', headers => { Accept => $ACCEPT });
is($r->{status}, 200, 'the same index under another tag');
ok(wait_for(sub { version_number() == 3 }, 10), '... one version for the new tag');
is_deeply(upstream_manifests(), [ 'GET /v2/library/multi/manifests/again' ],
          '... its manifests not fetched again');

SKIP: {
    my $no_podman = missing_tools('podman');
    skip $no_podman, 3 if $no_podman;
    PT::Images::retag($reg, 'team/multi:1.0', 'team/multi:podman');
    $reg->reset_requests;
    my ($prc, $pout) = podman("$tmp/podman", 'pull', '--quiet', '--tls-verify=false',
                              cache_ref($t, 'team/multi:podman'));
    is($prc, 0, 'podman pulls a manifest list') or diag($pout);
    my ($tr) = grep { $_->{name} eq 'cache/team/multi' }
               @{ list_all($t, "$API/repositories/container/container/") };
    ok(wait_for(sub {
        ($tr) = grep { $_->{name} eq 'cache/team/multi' }
                @{ list_all($t, "$API/repositories/container/container/") };
        $tr && $tr->{latest_version_href} =~ m{/versions/1/$};
    }, 10), '... one version for the pull (index and platforms together)')
        or diag($tr && $tr->{latest_version_href});
    my %n;
    $n{$_}++ for grep { m{^GET /v2/team/multi/manifests/sha256:} } @{ upstream_manifests() };
    is_deeply([ sort values %n ], [ 1, 1 ],
              '... each listed manifest fetched once, though podman asked for one of them')
        or diag(explain(\%n));
}

$t->stop;
$t->check_error_log;

done_testing;

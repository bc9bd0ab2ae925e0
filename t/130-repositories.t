#!/usr/bin/perl

# What pulls record, with Pulp's shapes and semantics: the first manifest
# pull under <base_path>/<name> creates a repository and a per-image
# distribution of that name; each new or moved tag makes a new repository
# version holding every cached tag, manifest and blob (the previous version
# is removed); pulling the same tag at the same digest makes none; an
# upstream 404 creates nothing; deleting distributions deletes repositories.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);

use PT::Nginx;
use PT::Pulp;
use PT::Registry;
use PT::Images;
use PT::Pull;
use PT::Util qw(need_tools);

need_tools(qw(docker-registry skopeo openssl));

my $ACCEPT = $PT::Images::ACCEPT;
my $REPOS = "$API/repositories/container/container/";
my $CDISTS = "$API/distributions/container/container/";
my $tmp = tempdir('pt-130-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

my $reg = PT::Registry->new->start;
my $img = PT::Images::seed($reg, qw(hello app));
PT::Images::retag($reg, 'library/hello:1.0', 'other/hello:1.0');

my $t = PT::Nginx->new(conf => cache_conf());
$t->start;
my $pt = setup_cache($t, $reg->url);
my $priv = setup_cache($t, $reg->url, base_path => 'priv', name => 'priv',
                       dist => { private => JSON::PP::true });

my $n = 0;

sub pull {
    my ($ref, $base) = @_;
    my ($rc, $out) = skopeo({ timeout => 30 }, 'copy', '--quiet',
                            '--src-tls-verify=false',
                            'docker://' . cache_ref($t, $ref, $base),
                            "dir:$tmp/" . ++$n);
    is($rc, 0, 'pull ' . ($base // 'cache') . "/$ref") or diag($out);
}

sub repos { list_all($t, $REPOS) }
sub cdists { list_all($t, $CDISTS) }

sub repo_named {
    my ($name) = @_;
    my ($r) = grep { $_->{name} eq $name } @{ repos() };
    return $r;
}

sub cdist_named {
    my ($name) = @_;
    my ($d) = grep { $_->{name} eq $name } @{ cdists() };
    return $d;
}

sub content {
    my ($kind, $version) = @_;
    return list_all($t, "$API/content/container/$kind/?repository_version=$version");
}

sub version_numbers {
    my ($repo) = @_;
    return [ sort { $a <=> $b } map { $_->{number} }
             @{ list_all($t, $repo->{versions_href}) } ];
}

sub summary {
    my ($version_href) = @_;
    my $v = $t->get($version_href);
    return undef unless $v->{status} == 200;
    my $p = $v->{json}{content_summary}{present};
    return { map { $_ => $p->{$_}{count} } keys %$p };
}

sub pt_dists {
    my ($dist) = @_;
    my $r = $t->get($dist->{pulp_href});
    return [ sort @{ $r->{json}{distributions} || [] } ];
}

# checks the latest version of repository $name: its number, and the tags,
# manifests and blobs it holds
sub check_version {
    my ($name, $number, $tags, $what) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;

    my $repo = repo_named($name);
    ok($repo, "$what: repository $name") or return;
    like($repo->{latest_version_href}, qr{^\Q$repo->{pulp_href}\Eversions/$number/$},
         "$what: latest version $number");
    is_deeply(version_numbers($repo), [$number],
              "$what: only version $number is kept");

    my %t = %$tags;      # tag => info
    my %m = map { $_->{digest} => $_ } values %t;
    my %b = map { ($_->{config} => 1, map { ($_ => 1) } @{ $_->{layers} }) } values %m;

    my $v = $repo->{latest_version_href};
    is_deeply(summary($v), { 'container.tag' => scalar(keys %t),
                             'container.manifest' => scalar(keys %m),
                             'container.blob' => scalar(keys %b) },
              "$what: content_summary");

    my $ct = content('tags', $v);
    my $cm = content('manifests', $v);
    my $cb = content('blobs', $v);
    is_deeply([ sort map { $_->{name} } @$ct ], [ sort keys %t ], "$what: tags");
    is_deeply([ sort map { $_->{digest} } @$cm ], [ sort keys %m ], "$what: manifests");
    is_deeply([ sort map { $_->{digest} } @$cb ], [ sort keys %b ], "$what: blobs");

    my %href = map { $_->{pulp_href} => $_->{digest} } @$cm;
    is_deeply({ map { $_->{name} => $href{ $_->{tagged_manifest} } } @$ct },
              { map { $_ => $t{$_}{digest} } keys %t },
              "$what: each tag points at its manifest");
    return $repo;
}


# nothing before the first pull; nothing for an upstream 404

is_deeply(repos(), [], 'no repository at first');
is_deeply(cdists(), [], 'no per-image distribution at first');
{
    my $r = http_get($t, '/v2/cache/library/nope/manifests/1.0',
                     headers => { Accept => $ACCEPT });
    is($r->{status}, 404, 'upstream 404: 404');
    $r = http_get($t, '/v2/cache/library/hello/manifests/nope',
                  headers => { Accept => $ACCEPT });
    is($r->{status}, 404, 'unknown tag of a known image: 404');
    is_deeply(repos(), [], 'upstream 404: no repository');
    is_deeply(cdists(), [], 'upstream 404: no distribution');
    is_deeply(pt_dists($pt), [], 'upstream 404: nothing in distributions');
}


# hello 1.0: repository, version 1, per-image distribution

my $h10 = $img->{'library/hello:1.0'};
my $h11 = $img->{'library/hello:1.1'};

pull('library/hello:1.0');
my $repo = check_version('cache/library/hello', 1, { '1.0' => $h10 }, 'after 1.0');
SKIP: {
    skip 'no repository', 12 unless $repo;

    is($repo->{versions_href}, "$repo->{pulp_href}versions/", 'versions_href');
    is($t->get("$repo->{versions_href}0/")->{status}, 404, 'version 0 is gone');
    my $v = $t->get($repo->{latest_version_href})->{json};
    is($v->{number}, 1, 'version detail: number');
    is($v->{repository}, $repo->{pulp_href}, 'version detail: repository');
    like($v->{content_summary}{present}{'container.tag'}{href},
         qr{^\Q$API\E/content/container/tags/\?repository_version=\Q$repo->{latest_version_href}\E$},
         'content_summary: href of the tags');

    my $d = cdist_named('cache/library/hello');
    ok($d, 'per-image distribution cache/library/hello');
    is($d && $d->{base_path}, 'cache/library/hello', '... its base_path');
    is($d && $d->{repository}, $repo->{pulp_href}, '... its repository');
    ok($d && !$d->{private}, '... not private, as its pull-through distribution');
    is_deeply(pt_dists($pt), [ $d ? $d->{pulp_href} : 'none' ],
              'listed in the pull-through distribution');
    is($t->get($d->{pulp_href})->{status}, 200, 'per-image distribution: detail');

    my ($tag) = @{ content('tags', $repo->{latest_version_href}) };
    my $m = $t->get($tag->{tagged_manifest});
    is($m->{status} == 200 && $m->{json}{digest}, $h10->{digest},
       'the tag\'s manifest href resolves');
}


# hello 1.1: version 2 with both tags

pull('library/hello:1.1');
check_version('cache/library/hello', 2, { '1.0' => $h10, '1.1' => $h11 }, 'after 1.1');
is($repo && $t->get("$repo->{versions_href}1/")->{status}, 404, 'version 1 is gone');


# the same tag at the same digest again: no new version

pull('library/hello:1.0');
check_version('cache/library/hello', 2, { '1.0' => $h10, '1.1' => $h11 },
              '1.0 pulled again');

{
    # fetched upstream again (its file lost), same digest: still no version
    unlink blob_file($t, $h10->{digest}) or die "unlink: $!";
    $reg->reset_requests;
    my $r = http_get($t, '/v2/cache/library/hello/manifests/1.0',
                     headers => { Accept => $ACCEPT });
    is($r->{status}, 200, 'manifest whose file was lost: 200');
    is(scalar(my @u = $reg->requests_matching('GET', qr{/manifests/1\.0$})), 1,
       '... fetched upstream again');
    check_version('cache/library/hello', 2, { '1.0' => $h10, '1.1' => $h11 },
                  '1.0 fetched again, same digest');
}


# a new tag for a known manifest: version 3

pull('library/hello:latest');
check_version('cache/library/hello', 3,
              { '1.0' => $h10, '1.1' => $h11, latest => $img->{'library/hello:latest'} },
              'after latest');


# another image: its own repository and distribution

pull('team/app:1.0');
check_version('cache/team/app', 1, { '1.0' => $img->{'team/app:1.0'} }, 'team/app');
is(scalar @{ pt_dists($pt) }, 2, 'two per-image distributions listed');


# the same blobs under another name: shared files, shared content hrefs

{
    my @before = store_files($t);
    my $r = http_get($t, "/v2/cache/other/hello/manifests/$h10->{digest}",
                     headers => { Accept => $ACCEPT });
    is($r->{status}, 200, 'other/hello by digest: 200');
    ok(repo_named('cache/other/hello'), 'a pull by digest creates the repository too');
    pull('other/hello:1.0');
    check_version('cache/other/hello', 1, { '1.0' => $h10 }, 'other/hello');
    is_deeply([ store_files($t) ], \@before, 'other/hello: no new file in the store');

    my $a = content('blobs', repo_named('cache/library/hello')->{latest_version_href});
    my $b = content('blobs', repo_named('cache/other/hello')->{latest_version_href});
    my %ha = map { $_->{digest} => $_->{pulp_href} } @$a;
    is_deeply({ map { $_->{digest} => $_->{pulp_href} } @$b },
              { map { $_ => $ha{$_} } map { $_->{digest} } @$b },
              'the same blob has the same href in both repositories');
}


# a private pull-through distribution makes private per-image ones

pull('library/hello:1.0', 'priv');
{
    my $d = cdist_named('priv/library/hello');
    ok($d, 'priv/library/hello distribution');
    ok($d && $d->{private}, '... private, as its pull-through distribution');
    is_deeply(pt_dists($priv), [ $d ? $d->{pulp_href} : 'none' ],
              '... listed in its own pull-through distribution');
    check_version('priv/library/hello', 1, { '1.0' => $h10 }, 'priv');
}


# deleting a per-image distribution deletes its repository

{
    my $d = cdist_named('cache/team/app');
    my $repo = repo_named('cache/team/app');
    my $r = $t->delete($d->{pulp_href});
    is($r->{status}, 202, 'DELETE per-image distribution: 202');
    my $task = eval { task_of($t, $r) };
    is($task && $task->{state}, 'completed', '... task completed');
    is($t->get($d->{pulp_href})->{status}, 404, '... the distribution is gone');
    is($t->get($repo->{pulp_href})->{status}, 404, '... its repository is gone');
    ok(!repo_named('cache/team/app'), '... not listed');
    ok(!grep({ $_ eq $d->{pulp_href} } @{ pt_dists($pt) }),
       '... nor in the pull-through distribution');
    ok(repo_named('cache/library/hello'), 'the other repositories stay');
}


# deleting the pull-through distribution deletes its per-image ones

{
    my @mine = grep { $_->{base_path} =~ m{^cache/} } @{ cdists() };
    my @repos = grep { $_->{name} =~ m{^cache/} } @{ repos() };
    is(scalar @mine, 2, 'two per-image distributions under cache/');
    my $r = $t->delete($pt->{pulp_href});
    is($r->{status}, 202, 'DELETE pull-through distribution: 202');
    my $task = eval { task_of($t, $r) };
    is($task && $task->{state}, 'completed', '... task completed');
    is($t->get($pt->{pulp_href})->{status}, 404, '... it is gone');
    is_deeply([ grep { $t->get($_->{pulp_href})->{status} != 404 } @mine, @repos ], [],
              '... with its per-image distributions and repositories');
    is_deeply([ sort map { $_->{name} } @{ repos() } ], [ 'priv/library/hello' ],
              'the other pull-through distribution keeps its repository');
    is_deeply([ sort map { $_->{name} } @{ cdists() } ], [ 'priv/library/hello' ],
              '... and its distribution');
    is_oci_error(http_get($t, '/v2/cache/library/hello/manifests/1.0',
                          headers => { Accept => $ACCEPT }),
                 404, 'NAME_UNKNOWN', 'cache/ is no longer served');
}

$t->stop;


# concurrent first pulls, from two workers: one repository, one
# distribution, one version per new tag, no tag lost

{
    my $t2 = PT::Nginx->new(conf => cache_conf(workers => 2, listen => 'reuseport'));
    $t2->start;
    my $race = setup_cache($t2, $reg->url, base_path => 'race');
    my @tags = (qw(1.0 1.1) x 4);

    my $res = parallel(scalar @tags, sub {
        my ($i) = @_;
        my $r = http_get($t2, "/v2/race/library/hello/manifests/$tags[$i]",
                         headers => { Accept => $ACCEPT });
        return { status => $r->{status},
                 digest => $r->{headers}{'docker-content-digest'} };
    });
    is_deeply([ map { "$_->{status} " . ($_->{digest} // '') } @$res ],
              [ map { "200 $img->{\"library/hello:$_\"}{digest}" } @tags ],
              'concurrent first pulls of 1.0 and 1.1: all 200, right digests');

    my @r = grep { $_->{name} eq 'race/library/hello' }
            @{ list_all($t2, $REPOS) };
    is(scalar @r, 1, 'concurrent first pulls: one repository');
    my @d = grep { $_->{name} eq 'race/library/hello' }
            @{ list_all($t2, $CDISTS) };
    is(scalar @d, 1, 'concurrent first pulls: one per-image distribution');
    is_deeply([ sort @{ $t2->get($race->{pulp_href})->{json}{distributions} || [] } ],
              [ map { $_->{pulp_href} } @d ],
              'concurrent first pulls: listed once');
    SKIP: {
        skip 'no repository', 2 unless @r;
        like($r[0]{latest_version_href}, qr{/versions/2/$},
             'concurrent first pulls: two new tags, version 2');
        my $v = $r[0]{latest_version_href};
        is_deeply([ sort map { $_->{name} } @{ list_all($t2,
                    "$API/content/container/tags/?repository_version=$v") } ],
                  [qw(1.0 1.1)], 'concurrent first pulls: both tags in it');
    }
    $t2->stop;
}

$reg->stop;

done_testing;

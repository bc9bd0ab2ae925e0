#!/usr/bin/perl

# What pulls made, seen through Pulp's generic views: /distributions/
# lists both kinds of distribution in the shape they share, /content/
# every tag, manifest and blob, and /remotes/container/container/ the
# per-image remotes that Pulp makes on a first pull, here read-only views
# of the pull-through remote's live settings, each named <base_path>/<name>
# and the one its per-image distribution names.

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

my $CREMOTES = "$API/remotes/container/container/";
my $CDISTS = "$API/distributions/container/container/";
my $tmp = tempdir('pt-078-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

my $reg = PT::Registry->new->start;
PT::Images::seed($reg, qw(hello app));

my $t = PT::Nginx->new(conf => cache_conf())->start;
my $pt = setup_cache($t, $reg->url, remote => { password => 'secret', username => 'u' });
my $remote = $pt->{remote_obj};

my $n = 0;
for my $ref ('library/hello:1.0', 'team/app:1.0') {
    my ($rc, $out) = skopeo({ timeout => 30 }, 'copy', '--quiet', '--src-tls-verify=false',
                            'docker://' . cache_ref($t, $ref), "dir:$tmp/" . ++$n);
    is($rc, 0, "pull cache/$ref") or diag($out);
}

my $doc = $t->get("$API/docs/api.json")->{json};
my $schemas = $doc->{components}{schemas};
sub keys_are {
    my ($obj, $schema, $name) = @_;
    is_deeply([ sort keys %$obj ], [ sort keys %{ $schemas->{$schema}{properties} } ],
              "$name: the keys of $schema");
}


# the per-image remotes

my $remotes = list_all($t, $CREMOTES);
is_deeply([ sort map { $_->{name} } @$remotes ], [ 'cache/library/hello', 'cache/team/app' ],
          '/remotes/container/container/: one remote per pulled image, named <base_path>/<name>');

my $l = $t->get("${CREMOTES}?name=cache/library/hello")->{json};
is($l->{count}, 1, '?name=<base_path>/<name> finds it');
my $hello = $l->{results}[0];
like($hello->{pulp_href}, qr{^\Q$CREMOTES\E$UUID_RE/$}, '... with a container remote\'s href');
like($hello->{prn}, qr/^prn:container\.containerremote:$UUID_RE$/, '... and PRN');
is($hello->{upstream_name}, 'library/hello', '... the name asked of the upstream');
is($hello->{url}, $reg->url, '... the pull-through remote\'s url');
ok(!exists $hello->{password} && !exists $hello->{username}, '... no secret shown');
is_deeply({ map { $_->{name} => $_->{is_set} ? 1 : 0 } @{ $hello->{hidden_fields} } },
          { client_key => 0, proxy_username => 0, proxy_password => 0, username => 1, password => 1 },
          '... secrets only as hidden_fields');
is_deeply([ @$hello{qw(include_tags exclude_tags sigstore)} ], [ undef, undef, undef ],
          '... Pulp\'s per-image filters: none');
keys_are($hello, 'container.ContainerRemoteResponse', 'a per-image remote');

my ($cdist) = grep { $_->{name} eq 'cache/library/hello' } @{ list_all($t, $CDISTS) };
is($cdist->{remote}, $hello->{pulp_href}, 'the per-image distribution names it as its remote');
is_deeply($t->get($hello->{pulp_href})->{json}, $hello, 'read by its href');
is($t->get("$CREMOTES" . uuid4() . '/')->{status}, 404, 'an unknown id: 404');

is(task_of($t, $t->patch($remote->{pulp_href}, { rate_limit => 7, tls_validation => JSON::PP::false }))
       ->{state}, 'completed', 'the pull-through remote is changed');
my $now = $t->get($hello->{pulp_href})->{json};
is_deeply([ $now->{rate_limit}, $now->{tls_validation} ? 1 : 0 ], [ 7, 0 ],
          '... and its per-image remotes show it at once: live settings');
my $changed = $t->get($remote->{pulp_href})->{json}{pulp_last_updated};
is($now->{pulp_last_updated}, $changed, '... changed when the pull-through remote was');
is($now->{pulp_created}, $cdist->{pulp_created}, '... made with its distribution');

is($t->post($CREMOTES, { name => 'x', url => 'https://x.example', upstream_name => 'x' })->{status},
   405, 'read-only: POST is 405');
is($t->patch($hello->{pulp_href}, { url => 'https://x.example' })->{status}, 405, '... PATCH is 405');
is($t->delete($hello->{pulp_href})->{status}, 405, '... DELETE is 405');
is(task_of($t, $t->patch($cdist->{pulp_href}, { remote => $remote->{pulp_href} }))->{state},
   'completed', 'a PATCH of the per-image distribution that names a remote');
is($t->get($cdist->{pulp_href})->{json}{remote}, $hello->{pulp_href}, '... leaves its remote as it was');


# /distributions/: both kinds

my $all = list_all($t, "$API/distributions/");
is_deeply([ sort map { $_->{name} } @$all ], [ 'cache/library/hello', 'cache/team/app', 'pt-cache' ],
          '/distributions/: the pull-through distribution and the per-image ones');
my %href = map { $_->{name} => $_->{pulp_href} } @$all;
is($href{'pt-cache'}, $pt->{pulp_href}, '... each with its own href');
is($href{'cache/library/hello'}, $cdist->{pulp_href}, '... per-image ones too');
my ($one) = grep { $_->{name} eq 'cache/library/hello' } @$all;
keys_are($one, 'DistributionResponse', 'a distribution in /distributions/');
is($one->{repository}, $cdist->{repository}, '... with its repository');
my ($ptd) = grep { $_->{name} eq 'pt-cache' } @$all;
is($ptd->{repository}, undef, '... none for the pull-through one');

is_deeply([ map { $_->{name} } @{ $t->get("$API/distributions/?base_path__startswith=cache/&ordering=name")
                                      ->{json}{results} } ],
          [ 'cache/library/hello', 'cache/team/app' ], '... filtered and ordered as any list');
my @paged = map { $t->get("$API/distributions/?ordering=-name&limit=1&offset=$_")->{json}{results}[0]{name} }
            0 .. 2;
is_deeply(\@paged, [ 'pt-cache', 'cache/team/app', 'cache/library/hello' ], '... paged across both kinds');
is($t->get("$API/distributions/?name=pt-cache&fields=name")->{json}{results}[0]{name}, 'pt-cache',
   '... a name filter finds a pull-through distribution');
is($t->post("$API/distributions/", { name => 'x' })->{status}, 405, '... read-only');


# /content/: every unit

my %units;
for my $kind (qw(tags manifests blobs)) {
    $units{$kind} = [ map { $_->{pulp_href} } @{ list_all($t, "$API/content/container/$kind/") } ];
}
my $content = list_all($t, "$API/content/");
is_deeply([ map { $_->{pulp_href} } @$content ], [ map { @{ $units{$_} } } qw(tags manifests blobs) ],
          '/content/: the tags, then the manifests, then the blobs');
keys_are($content->[0], 'MultipleArtifactContentResponse', 'a unit in /content/');
like($content->[0]{prn}, qr/^prn:container\.tag:/, '... with its PRN');

my @pages;
for (my $off = 0; ; $off += 2) {
    my $p = $t->get("$API/content/?limit=2&offset=$off")->{json};
    push @pages, map { $_->{pulp_href} } @{ $p->{results} };
    last unless $p->{next};
}
is_deeply(\@pages, [ map { $_->{pulp_href} } @$content ], '... pages of 2 cut across the kinds');

is_deeply([ map { $_->{pulp_href} } @{ list_all($t, "$API/content/?pulp_type__in=container.blob,container.tag") } ],
          [ @{ $units{tags} }, @{ $units{blobs} } ], '?pulp_type__in= keeps those kinds');

my ($repo) = grep { $_->{name} eq 'cache/library/hello' }
             @{ list_all($t, "$API/repositories/container/container/") };
my $version = $repo->{latest_version_href};
my @in = map { $_->{pulp_href} } @{ list_all($t, "$API/content/?repository_version=$version") };
my %hv;
for my $kind (qw(tags manifests blobs)) {
    $hv{$kind} = [ map { $_->{pulp_href} }
                   @{ list_all($t, "$API/content/container/$kind/?repository_version=$version") } ];
}
is_deeply(\@in, [ map { @{ $hv{$_} } } qw(tags manifests blobs) ], '?repository_version= keeps its units');
ok(@in && @in < @$content, '... fewer than all');
is_json_status($t->get("$API/content/?repository_version=$API/nope/"), 400,
               { repository_version => [ 'Invalid hyperlink - Object does not exist.' ] },
               '... an unknown version: a field error');
is($t->get("$API/content/" . uuid4() . '/')->{status}, 404, '... no objects of its own');


# a per-image distribution deleted takes its remote with it

is(task_of($t, $t->delete($cdist->{pulp_href}))->{state}, 'completed', 'the per-image distribution is deleted');
is($t->get($hello->{pulp_href})->{status}, 404, '... and its remote is gone');
is($t->get("${CREMOTES}?name=cache/library/hello")->{json}{count}, 0, '... from the list too');

$t->stop;
$reg->stop;

done_testing;

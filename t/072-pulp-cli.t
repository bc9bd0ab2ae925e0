#!/usr/bin/perl

# Pulp's own client against the cache, as a Pulp user drives it: the real
# pulp-cli 0.40.3 with pulp-glue (vendored beside the repo, unmodified)
# reads the OpenAPI document, then creates, shows, lists, updates and
# destroys a pull-through remote and distribution through its operation
# ids, waits on their tasks, and lists what a pull made: repositories,
# distributions, manifests, tags. The admin location asks for Basic
# credentials (auth_basic), which pulp-cli sends because the document
# says the API takes them; the document itself is public, as Pulp's is.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use File::Spec;

use PT::Nginx;
use PT::Pulp;
use PT::Registry;
use PT::Images;
use PT::Pull;
use PT::Util qw(need_tools declare_tool missing_tools);

my $PULP = $ENV{PT_PULP_CLI}
    // File::Spec->catfile($PT::Nginx::REPO, '..', 'shared', 'vendor', 'pulp-cli', 'pulp');

declare_tool('pulp', 'pulp-cli 0.40.3, vendored beside the repository', $PULP);
need_tools(qw(pulp docker-registry skopeo openssl curl));

# the launcher says in one line what it lacks (python3 with pydantic 2, or
# the Debian packages that make test installs)
my ($rc, $out) = run_cmd($PULP, '--version');
plan(skip_all => "pulp-cli cannot run here: $out") if $rc;

my $JSON = JSON::PP->new->canonical;

my $reg = PT::Registry->new->start;
PT::Images::seed($reg, 'hello');

my $auth = <<'EOF';
            auth_basic "Pulp";
            auth_basic_user_file %%TESTDIR%%/htpasswd;
EOF

# the document public, the API behind auth_basic
my $conf = cache_conf(server => <<"EOF");
        location = /pulp/api/v3/docs/api.json {
            pullthrough_admin;
        }
EOF
$conf =~ s{(pullthrough_admin;\n)(\s+\}\n\s+\}\n\}\n)$}{$1$auth$2}
    or die "cannot put auth_basic in the admin location";

my $t = PT::Nginx->new(conf => $conf);

my $hash = `openssl passwd -apr1 -salt pt0salt 's3cret pass'`;
die "openssl passwd failed\n" if $? || !$hash;
PT::Util::spew($t->dir . '/htpasswd', "admin:$hash");

$t->start;

$ENV{XDG_CACHE_HOME} = $t->dir . '/xdg-cache';
$ENV{XDG_CONFIG_HOME} = $t->dir . '/xdg-config';

my @base = ('--base-url', $t->base_url);
my @creds = ('--username', 'admin', '--password', 's3cret pass');

# pulp [args]: (exit status, decoded JSON or undef, output)
sub pulp {
    my ($rc, $out) = run_cmd({ timeout => 60 }, $PULP, @base, @creds, @_);
    my ($json) = $out =~ /^(\s*[\[\{].*)\z/ms;
    my $doc = defined $json ? eval { $JSON->decode($json) } : undef;
    return ($rc, $doc, $out);
}

sub call {
    my ($id, %o) = @_;
    my @args = ('debug', 'openapi', 'call', '--id', $id);
    push @args, map { ('--parameter', "$_=$o{params}{$_}") } sort keys %{ $o{params} || {} };
    push @args, '--body', $JSON->encode($o{body}) if $o{body};
    return pulp(@args);
}


# the document, and who may read what

my ($doc_rc, $doc_out) = run_cmd($PULP, @base, 'debug', 'openapi', 'operation-ids');
is($doc_rc, 0, 'pulp-cli reads the OpenAPI document without credentials') or diag($doc_out);
my $op_ids = eval { decode_json($doc_out) } || [];
my %ops = map { $_ => 1 } @$op_ids;
ok($ops{$_}, "... which has $_")
    for qw(remotes_container_pull_through_create distributions_container_pull_through_list
           tasks_read repositories_container_container_versions_list content_container_tags_list
           artifacts_read status_read);

($rc, $out) = run_cmd($PULP, @base, 'status');
isnt($rc, 0, 'status without credentials fails');
like($out, qr/Authentication failed for status_read/, '... saying why, not with a traceback');
unlike($out, qr/Traceback/, '... no traceback');

($rc, $out) = run_cmd($PULP, @base, '--username', 'admin', '--password', 'wrong', 'status');
isnt($rc, 0, 'wrong credentials fail too');

my ($st, $status);
($st, $status, $out) = pulp('status');
is($st, 0, 'pulp status with credentials') or diag($out);
is_deeply({ map { $_->{component} => $_->{version} } @{ $status->{versions} || [] } },
          { core => '3.73.0', container => '2.23.0' }, '... in Pulp\'s shape: the versions followed');
ok($status->{database_connection}{connected}, '... the store connected');


# a remote and a distribution through their operation ids

my ($c, $remote);
($c, $remote, $out) = call('remotes_container_pull_through_create',
                           body => { name => 'hub', url => $reg->url });
is($c, 0, 'remotes_container_pull_through_create') or diag($out);
like($remote->{pulp_href} // '', qr{^\Q$REMOTES\E$UUID_RE/$}, '... answers the remote at once, with its href');
my $rhref = $remote->{pulp_href};

($c, my $read) = call('remotes_container_pull_through_read',
                      params => { container_container_pull_through_remote_href => $rhref });
is_deeply($read, $remote, 'remotes_container_pull_through_read: the same remote');

($c, my $page) = call('remotes_container_pull_through_list', params => { name => 'hub' });
is_deeply([ map { $_->{pulp_href} } @{ $page->{results} || [] } ], [ $rhref ],
          'remotes_container_pull_through_list with name=');

($c, undef, $out) = call('remotes_container_pull_through_create', body => { name => 5, url => $reg->url });
isnt($c, 0, 'a body the schema refuses is refused before it is sent');
like($out, qr/name/, '... naming the field');

($c, undef, $out) = call('remotes_container_pull_through_create', body => { name => 'hub', url => $reg->url });
isnt($c, 0, 'a second remote of the same name fails');
like($out, qr/unique|exists/i, '... with the field error of the server');

my $task;
($c, $task, $out) = call('remotes_container_pull_through_partial_update',
                         params => { container_container_pull_through_remote_href => $rhref },
                         body => { tag_ttl => 30 });
is($c, 0, 'remotes_container_pull_through_partial_update') or diag($out);
is($task->{state}, 'completed', '... waits for its task, completed');
like($out, qr{Started background task /pulp/api/v3/tasks/}, '... which pulp-cli says it started');
my $update_task = $task->{pulp_href};

($c, $task, $out) = call('remotes_container_pull_through_update',
                         params => { container_container_pull_through_remote_href => $rhref },
                         body => { name => 'hub', url => $reg->url, tag_ttl => 60 });
is($c, 0, 'remotes_container_pull_through_update (PUT)') or diag($out);
(undef, $read) = call('remotes_container_pull_through_read',
                      params => { container_container_pull_through_remote_href => $rhref });
is($read->{tag_ttl}, 60, '... and the remote is updated');

my $dist;
($c, $task, $out) = call('distributions_container_pull_through_create',
                         body => { name => 'hub', base_path => 'hub', remote => $rhref });
is($c, 0, 'distributions_container_pull_through_create') or diag($out);
is($task->{state}, 'completed', '... its task completed');
my ($dhref) = @{ $task->{created_resources} || [] };
like($dhref // '', qr{^\Q$DISTS\E$UUID_RE/$}, '... and created the distribution');

($c, $page) = call('distributions_container_pull_through_list');
is($page->{count}, 1, 'distributions_container_pull_through_list');
is($page->{results}[0]{remote}, $rhref, '... on the remote');

($c, $task) = call('distributions_container_pull_through_partial_update',
                   params => { container_container_pull_through_distribution_href => $dhref },
                   body => { description => 'from pulp-cli' });
($c, $dist) = call('distributions_container_pull_through_read',
                   params => { container_container_pull_through_distribution_href => $dhref });
is($dist->{description}, 'from pulp-cli', 'distributions_container_pull_through_partial_update, then _read');


# tasks: show, wait, list with filters

my $shown;
($c, $shown, $out) = pulp('task', 'show', '--href', $update_task);
is($c, 0, 'pulp task show --href') or diag($out);
is($shown->{pulp_href}, $update_task, '... the task');
($c, $shown) = pulp('task', 'show', '--href', $update_task, '--wait');
is($shown->{state}, 'completed', 'pulp task show --wait: completed');

($c, my $tasks, $out) = pulp('task', 'list', '--state', 'completed');
is($c, 0, 'pulp task list --state completed') or diag($out);
ok(@{ $tasks || [] } >= 4 && !grep({ $_->{state} ne 'completed' } @$tasks), '... completed tasks only');

($c, $tasks) = pulp('task', 'list', '--reserved-resource', $rhref);
is_deeply([ sort map { $_->{name} } @{ $tasks || [] } ],
          [ sort qw(pulpcore.app.tasks.base.general_update pulpcore.app.tasks.base.general_update) ],
          'pulp task list --reserved-resource: the remote\'s two updates');
($c, $tasks) = pulp('task', 'list', '--exclusive-resource', $rhref);
is(scalar @{ $tasks || [] }, 2, '... held exclusively');
($c, $tasks) = pulp('task', 'list', '--shared-resource', $rhref);
is(scalar @{ $tasks || [] }, 0, '... none shared');
($c, $tasks) = pulp('task', 'list', '--name-contains', 'general_create', '--limit', '1');
is(scalar @{ $tasks || [] }, 1, 'pulp task list --name-contains --limit');
is($tasks->[0]{name}, 'pulpcore.app.tasks.base.general_create', '... that name');


# a pull, and what pulp-cli then sees of it

my ($sk, $sk_out) = skopeo('copy', '--src-tls-verify=false', 'docker://' . cache_ref($t, 'library/hello:1.0', 'hub'),
                           'dir:' . $t->dir . '/hello');
is($sk, 0, 'skopeo pulls hub/library/hello:1.0 through the cache') or diag($sk_out);

my $repos;
($c, $repos, $out) = pulp('container', 'repository', 'list');
is($c, 0, 'pulp container repository list') or diag($out);
is_deeply([ map { $_->{name} } @{ $repos || [] } ], [ 'hub/library/hello' ], '... the image\'s repository');
my $repo = $repos->[0];

($c, my $versions) = call('repositories_container_container_versions_list',
                          params => { container_container_repository_href => $repo->{pulp_href} });
is($versions->{count}, 1, 'repositories_container_container_versions_list: one version');

($c, my $dists, $out) = pulp('container', 'distribution', 'list');
is($c, 0, 'pulp container distribution list') or diag($out);
is_deeply([ map { $_->{base_path} } @{ $dists || [] } ], [ 'hub/library/hello' ], '... the image\'s distribution');

($c, my $manifests, $out) = pulp('container', 'content', '-t', 'manifest', 'list');
is($c, 0, 'pulp container content -t manifest list') or diag($out);
is(scalar @{ $manifests || [] }, 1, '... one manifest');
like($manifests->[0]{digest} // '', qr/^sha256:[0-9a-f]{64}$/, '... with its digest');
is($manifests->[0]{type}, 'image', '... Pulp\'s type');
ok(defined $manifests->[0]{architecture} && defined $manifests->[0]{os},
   '... and the platform of its config, which the pull fetched');

# every unit shows what the OpenAPI document says it does
my (undef, $api_json) = run_cmd('curl', '-s', $t->base_url . "$API/docs/api.json");
my $schemas = (eval { decode_json($api_json) } || {})->{components}{schemas};
is_deeply([ sort keys %{ $manifests->[0] } ],
          [ sort keys %{ $schemas->{'container.ManifestResponse'}{properties} || {} } ],
          '... its keys those of container.ManifestResponse');

($c, my $tags) = pulp('container', 'content', '-t', 'tag', 'list', '--name', '1.0');
is_deeply([ map { $_->{name} } @{ $tags || [] } ], [ '1.0' ], 'pulp container content -t tag list --name');

($c, my $blobs) = pulp('container', 'content', '-t', 'blob', 'list');
is(scalar @{ $blobs || [] }, 3, 'pulp container content -t blob list: the config and two layers');
my @two = sort map { $_->{digest} } @{ $blobs || [] }[0, 1];
($c, my $some) = pulp('container', 'content', '-t', 'blob', 'list', map { ('--digest-in', $_) } @two);
is_deeply([ sort map { $_->{digest} } @{ $some || [] } ], \@two, '... --digest-in: those');

($c, my $artifacts) = call('artifacts_list');
is($artifacts->{count}, 4, 'artifacts_list: the files stored, the manifest, its config and two layers');
my $half = $t->get("$API/artifacts/?limit=2&offset=1", auth => [ 'admin', 's3cret pass' ])->{json};
is_deeply($half->{results}, [ @{ $artifacts->{results} || [] }[1, 2] ], '... in pages');
my $art = $artifacts->{results}[0] || {};
is("sha256:" . ($art->{sha256} // ''), $art->{file}, '... each named by its digest, with its sha256');
($c, my $art2) = call('artifacts_read', params => { artifact_href => $art->{pulp_href} });
is_deeply($art2, $art, 'artifacts_read: the same');

($c, my $shown_repo, $out) = pulp('show', '--href', $repo->{pulp_href});
is($c, 0, 'pulp show --href (any href, through artifacts_read)') or diag($out);
is_deeply($shown_repo, $repo, '... the repository');

($c, my $page_repo) = pulp('repository', 'list');
is(scalar @{ $page_repo || [] }, 1, 'pulp repository list (the generic list)');

($c, my $all_dists, $out) = pulp('distribution', 'list', '--base-path-contains', 'hub');
is($c, 0, 'pulp distribution list --base-path-contains') or diag($out);
is_deeply([ sort map { $_->{name} } @{ $all_dists || [] } ], [ 'hub', 'hub/library/hello' ],
          '... both kinds of distribution');
($c, $all_dists, $out) = pulp('distribution', 'list', '--label-select', 'env=prod');
is_deeply([ $c, $all_dists ], [ 0, [] ], '... --label-select: none labelled so') or diag($out);

($c, my $all_content, $out) = pulp('content', 'list', '--limit', '100');
is($c, 0, 'pulp content list') or diag($out);
is(scalar @{ $all_content || [] }, 1 + 1 + 3, '... the tag, the manifest and three blobs');

($c, my $all_remotes) = pulp('remote', 'list');
is_deeply([ map { $_->{name} } @{ $all_remotes || [] } ], [ 'hub' ], 'pulp remote list');

($c, my $image_remote, $out) = pulp('container', 'remote', 'show', '--name', 'hub/library/hello');
is($c, 0, 'pulp container remote show --name <base_path>/<name>') or diag($out);
is($image_remote->{upstream_name}, 'library/hello', '... the per-image remote, a view of the pull-through one');
is($image_remote->{pulp_href}, $dists->[0]{remote}, '... the one its distribution names');


# destroyed through their operation ids

($c, $task, $out) = call('distributions_container_pull_through_delete',
                         params => { container_container_pull_through_distribution_href => $dhref });
is($c, 0, 'distributions_container_pull_through_delete') or diag($out);
is($task->{state}, 'completed', '... its task completed');
($c, undef, $out) = call('distributions_container_pull_through_read',
                         params => { container_container_pull_through_distribution_href => $dhref });
isnt($c, 0, '... and the distribution is gone');
like($out, qr/Not found/, '... not found');

($c, $task) = call('remotes_container_pull_through_delete',
                   params => { container_container_pull_through_remote_href => $rhref });
is($task->{state}, 'completed', 'remotes_container_pull_through_delete');
($c, $page) = call('remotes_container_pull_through_list');
is($page->{count}, 0, '... no remote left');

$t->stop;
$reg->stop;

done_testing;
